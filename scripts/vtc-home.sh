# vtc-home.sh: sourced by the llama.cpp scripts. Sets `vtc_home` to VTC's cache
# directory by the rule of vtc_import::fetch::vtc_home(): $VTC_HOME, else
# $XDG_CACHE_HOME/vtc when that is an absolute path, else ~/.cache/vtc.
if [[ -n ${VTC_HOME:-} ]]; then
    vtc_home=$VTC_HOME
elif [[ ${XDG_CACHE_HOME:-} == /* ]]; then
    vtc_home=$XDG_CACHE_HOME/vtc
else
    vtc_home=$HOME/.cache/vtc
fi
