// llamacpp_logits.cpp: llama-vtc-logits, a small program against llama.cpp's public API
// (llama.h only) that writes reference logits for VTC's model tests.
//
//     scripts/llamacpp-logits.sh MODEL.gguf IN.json OUT.json
//
// (the script compiles this file against the static llama.cpp libraries built by
// scripts/llamacpp-build.sh and runs the binary with the same arguments).
//
// IN.json:
//     {"n_predict": N, "top_k": K, "full": bool,
//      "cases": [{"name": str, "text": str} | {"name": str, "tokens": [id, ...]}]}
// A "text" is tokenized by llama.cpp with add_special=true (BOS if the model asks for it)
// and parse_special=true; "tokens" are fed as they are (no BOS added).
//
// For each case a fresh context is made with
//     n_ctx = n_batch = n_ubatch = (prompt + n_predict) rounded up to a multiple of 256,
//     flash attention disabled, K and V cache in F32, one sequence, 2 threads,
//     swa_full = true (b11312's default: the SWA layers' cache is n_ctx cells, nothing is
//     evicted; the sliding-window mask is applied all the same: position i sees j iff
//     0 <= i - j < n_swa),
// and the model is loaded with use_extra_bufts = false (no weight repacking, like
// `--repack 0`) on the CPU. The whole prompt is decoded as one batch with logits for every
// position, then N tokens are generated greedily one at a time (argmax, ties to the lowest
// id; EOS does not stop generation), each with its logits. Every fed token has a row:
// positions 0 .. n_prompt+N-1; the last generated token is fed too, so the last row is the
// distribution after it (its argmax is not used). Row p is the distribution for the token
// at p+1, so tokens[p+1] == top[p][0][0] for p >= n_prompt-1.
//
// OUT.json:
//     {"model": basename, "llama_cpp": "b11312", "kv_cache": "f32", "n_predict": N,
//      "top_k": K, "n_vocab": V,
//      "cases": [{"name": .., "text": .. (if given), "tokens": [prompt ids, generated ids],
//                 "n_prompt": n, "top": [[[id, logit] x K] per position],
//                 "margin": [top1 - top2 per position],
//                 "logits": [[V floats] per position] (only if "full")}]}
// Floats are printed with %.9g (round-trips an f32). The detokenized greedy continuation of
// each case goes to stderr.
#include "llama.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using json = nlohmann::json;

static void quiet_log(enum ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_WARN || getenv("VTC_LLAMA_VERBOSE")) {
        fputs(text, stderr);
    }
}

static std::string json_str(const std::string & s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"':  o += "\\\""; break;
            case '\\': o += "\\\\"; break;
            case '\n': o += "\\n";  break;
            case '\r': o += "\\r";  break;
            case '\t': o += "\\t";  break;
            default:
                if (c < 0x20) {
                    char b[8];
                    snprintf(b, sizeof b, "\\u%04x", c);
                    o += b;
                } else {
                    o += (char) c;
                }
        }
    }
    return o + "\"";
}

static std::string fmt_f(float x) {
    char b[32];
    snprintf(b, sizeof b, "%.9g", (double) x);
    return b;
}

static std::string piece(const llama_vocab * vocab, llama_token t) {
    char buf[256];
    int n = llama_token_to_piece(vocab, t, buf, sizeof buf, 0, true);
    if (n < 0) {
        std::string s(-n, '\0');
        n = llama_token_to_piece(vocab, t, s.data(), (int) s.size(), 0, true);
        return s.substr(0, std::max(n, 0));
    }
    return std::string(buf, n);
}

int main(int argc, char ** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IN.json OUT.json\n", argv[0]);
        return 2;
    }
    const std::string model_path = argv[1];
    json in;
    {
        std::ifstream f(argv[2]);
        if (!f) { fprintf(stderr, "cannot read %s\n", argv[2]); return 1; }
        in = json::parse(f);
    }
    const int n_predict = in.value("n_predict", 0);
    const int top_k     = in.value("top_k", 8);
    const bool full     = in.value("full", false);
    const int n_threads = getenv("VTC_LLAMA_THREADS") ? atoi(getenv("VTC_LLAMA_THREADS")) : 2;

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers    = 0;
    mp.use_extra_bufts = false;  // no repacking (--repack 0)
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { fprintf(stderr, "failed to load %s\n", model_path.c_str()); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    std::string base = model_path.substr(model_path.find_last_of('/') + 1);
    std::string out = "{\"model\": " + json_str(base) +
        ", \"llama_cpp\": \"b11312\", \"kv_cache\": \"f32\", \"n_predict\": " +
        std::to_string(n_predict) + ", \"top_k\": " + std::to_string(top_k) +
        ", \"n_vocab\": " + std::to_string(n_vocab) + ",\n\"cases\": [\n";

    bool first_case = true;
    for (const auto & c : in.at("cases")) {
        const std::string name = c.at("name").get<std::string>();
        std::vector<llama_token> toks;
        const bool has_text = c.contains("text");
        std::string text;
        if (has_text) {
            text = c.at("text").get<std::string>();
            int n = llama_tokenize(vocab, text.data(), (int) text.size(), nullptr, 0, true, true);
            toks.resize(n < 0 ? -n : n);
            n = llama_tokenize(vocab, text.data(), (int) text.size(), toks.data(), (int) toks.size(), true, true);
            if (n < 0) { fprintf(stderr, "tokenize failed for %s\n", name.c_str()); return 1; }
            toks.resize(n);
        } else {
            for (const auto & t : c.at("tokens")) {
                toks.push_back(t.get<llama_token>());
            }
        }
        const int n_prompt = (int) toks.size();
        if (n_prompt == 0) { fprintf(stderr, "empty case %s\n", name.c_str()); return 1; }
        for (llama_token t : toks) {
            if (t < 0 || t >= n_vocab) { fprintf(stderr, "bad token %d in %s\n", t, name.c_str()); return 1; }
        }
        const uint32_t need  = (uint32_t) (n_prompt + n_predict);
        const uint32_t n_ctx = (need + 255) / 256 * 256;

        llama_context_params cp = llama_context_default_params();
        cp.n_ctx           = n_ctx;
        cp.n_batch         = n_ctx;
        cp.n_ubatch        = n_ctx;
        cp.n_seq_max       = 1;
        cp.n_threads       = n_threads;
        cp.n_threads_batch = n_threads;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.type_k          = GGML_TYPE_F32;
        cp.type_v          = GGML_TYPE_F32;
        cp.offload_kqv     = false;
        cp.swa_full        = true;   // the default in b11312; the SWA layers still get the SWA mask
        cp.no_perf         = true;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) { fprintf(stderr, "failed to create context (n_ctx %u)\n", n_ctx); return 1; }

        std::vector<std::vector<float>> rows;  // logits per fed position
        llama_batch batch = llama_batch_init((int32_t) n_ctx, 0, 1);
        auto feed = [&](const std::vector<llama_token> & ts, int pos0) {
            batch.n_tokens = (int32_t) ts.size();
            for (size_t i = 0; i < ts.size(); i++) {
                batch.token[i]     = ts[i];
                batch.pos[i]       = pos0 + (int) i;
                batch.n_seq_id[i]  = 1;
                batch.seq_id[i][0] = 0;
                batch.logits[i]    = 1;
            }
            if (llama_decode(ctx, batch) != 0) {
                fprintf(stderr, "llama_decode failed (%s, pos %d)\n", name.c_str(), pos0);
                exit(1);
            }
            for (size_t i = 0; i < ts.size(); i++) {
                const float * l = llama_get_logits_ith(ctx, (int32_t) i);
                rows.emplace_back(l, l + n_vocab);
            }
        };
        auto argmax = [&](const std::vector<float> & r) {
            int best = 0;
            for (int i = 1; i < n_vocab; i++) {
                if (r[i] > r[best]) best = i;  // strict: ties go to the lowest id
            }
            return (llama_token) best;
        };

        feed(toks, 0);
        for (int i = 0; i < n_predict; i++) {
            llama_token t = argmax(rows.back());
            toks.push_back(t);
            feed({t}, (int) toks.size() - 1);
        }
        llama_batch_free(batch);
        llama_free(ctx);

        std::string cont;
        for (int i = n_prompt; i < (int) toks.size(); i++) cont += piece(vocab, toks[i]);
        fprintf(stderr, "[%s] %d prompt tokens, n_ctx %u; continuation: %s\n",
                name.c_str(), n_prompt, n_ctx, json_str(cont).c_str());

        std::string s = first_case ? "" : ",\n";
        first_case = false;
        s += "{\"name\": " + json_str(name);
        if (has_text) s += ", \"text\": " + json_str(text);
        s += ", \"n_prompt\": " + std::to_string(n_prompt) + ",\n \"tokens\": [";
        for (size_t i = 0; i < toks.size(); i++) s += (i ? ", " : "") + std::to_string(toks[i]);
        s += "],\n \"top\": [";
        std::string margins = "[";
        std::vector<int> idx(n_vocab);
        for (size_t p = 0; p < rows.size(); p++) {
            const auto & r = rows[p];
            for (int i = 0; i < n_vocab; i++) idx[i] = i;
            const int k = std::min(std::max(top_k, 2), n_vocab);
            std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
                return r[a] > r[b] || (r[a] == r[b] && a < b);
            });
            s += p ? ",\n  [" : "\n  [";
            for (int i = 0; i < std::min(top_k, n_vocab); i++) {
                s += (i ? ", [" : "[") + std::to_string(idx[i]) + ", " + fmt_f(r[idx[i]]) + "]";
            }
            s += "]";
            margins += (p ? ", " : "") + fmt_f(r[idx[0]] - r[idx[1]]);
        }
        s += "],\n \"margin\": " + margins + "]";
        if (full) {
            s += ",\n \"logits\": [";
            for (size_t p = 0; p < rows.size(); p++) {
                s += p ? ",\n  [" : "\n  [";
                for (int i = 0; i < n_vocab; i++) s += (i ? ", " : "") + fmt_f(rows[p][i]);
                s += "]";
            }
            s += "]";
        }
        s += "}";
        out += s;
    }
    out += "\n]}\n";

    FILE * f = fopen(argv[3], "wb");
    if (!f) { fprintf(stderr, "cannot write %s\n", argv[3]); return 1; }
    fwrite(out.data(), 1, out.size(), f);
    fclose(f);

    llama_model_free(model);
    llama_backend_free();
    return 0;
}
