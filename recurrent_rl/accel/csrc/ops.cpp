/* Torch operators over the C loops of recurrent.c: one layer of stacked cores as one autograd
 * node and one rollout step, called from Python as torch.ops.recurrent_rl.layer / .step, and the
 * linear scan of the scan memories as torch.ops.recurrent_rl.scan.
 *
 * Why C++ and not ctypes: at RL's sizes (T=32, B=8, H=64, actor + critic) a GRU layer's forward
 * and backward loops take about 0.5 ms per gradient step, and the Python around them (a Python
 * autograd Function, pointer arrays, shape checks, buffer bookkeeping) took another 0.25 ms.
 * Here that glue is C++: the checks, the pointer arrays, the pooled buffers and the autograd
 * node cost a few microseconds.
 *
 * Built by recurrent_rl/accel/native.py together with recurrent.c (one shared library) and loaded
 * with torch.ops.load_library. Tensor layouts are recurrent.c's (see the comment at its top);
 * weights come flat: w_ih of every core, then b_ih, w_hh, b_hh.
 */
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" {
typedef const float *const *cptrs;
typedef float *const *ptrs;
void gru_forward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs b_ih, cptrs w_hh,
                 cptrs b_hh, cptrs h0, const float *keep, float *gi, float *wt, float *g, float *prev, float *rz,
                 float *cand, float *ghn, ptrs out);
void gru_backward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs w_hh,
                  const float *keep, const float *prev, const float *rz, const float *cand, const float *ghn,
                  cptrs d_out, float *ggi, float *ggh, float *tr, float *dh, ptrs dx, ptrs dw_ih, ptrs db_ih,
                  ptrs dw_hh, ptrs db_hh, ptrs dh0);
void lstm_forward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs b_ih, cptrs w_hh,
                  cptrs b_hh, cptrs h0, cptrs c0, const float *keep, float *wt, float *prev_h, float *prev_c,
                  float *acts, float *tanh_c, ptrs out, ptrs c_last);
void lstm_backward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs w_hh,
                   const float *keep, const float *prev_h, const float *prev_c, const float *acts,
                   const float *tanh_c, cptrs d_out, cptrs dc_last, float *gp, float *tr, float *dh, ptrs dx,
                   ptrs dw_ih, ptrs db_ih, ptrs dw_hh, ptrs db_hh, ptrs dh0, ptrs dc0);
void rnn_forward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs b_ih, cptrs w_hh,
                 cptrs b_hh, cptrs h0, const float *keep, float *wt, float *prev, ptrs out);
void rnn_backward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs w_hh,
                  const float *keep, const float *prev, cptrs out, cptrs d_out, float *ga, float *tr, float *dh,
                  ptrs dx, ptrs dw_ih, ptrs db_ih, ptrs dw_hh, ptrs db_hh, ptrs dh0);
}

namespace {

using at::Tensor;
using at::TensorList;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum Kind { GRU = 0, LSTM = 1, RNN = 2 };
const char *const KIND_NAMES[] = {"gru", "lstm", "rnn"};
const int GATES[] = {3, 4, 1};

/* Float32 buffers that go back to a pool after use, by size. A gradient step of the zoo's
 * CartPole policy needs about 2 MB of saved and scratch arrays; fresh allocations that size come
 * as new pages from the OS and their page faults show (measured 258 against 225 us for a GRU
 * forward call). A buffer goes back only when nothing views it any more. */
class Pool {
  public:
    Tensor take(int64_t n) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto found = free_.find(n);
            if (found != free_.end() && !found->second.empty()) {
                Tensor t = std::move(found->second.back());
                found->second.pop_back();
                return t;
            }
        }
        return at::empty({n}, at::kFloat);
    }
    void give(Tensor t) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto &free = free_[t.numel()];
        if (free.size() < 8) free.push_back(std::move(t));
    }

  private:
    std::mutex mutex_;
    std::unordered_map<int64_t, std::vector<Tensor>> free_;
};

Pool &pool() {
    static Pool *p = new Pool();  // never destroyed: tensors may outlive static destruction at exit
    return *p;
}

std::string shape_text(at::IntArrayRef shape) {  // as Python prints a tuple
    std::ostringstream s;
    s << "(";
    for (size_t i = 0; i < shape.size(); i++) s << (i ? ", " : "") << shape[i];
    s << (shape.size() == 1 ? ",)" : ")");
    return s.str();
}

std::string dtype_text(at::ScalarType t) {  // as torch names it in Python
    switch (t) {
        case at::kFloat: return "torch.float32";
        case at::kDouble: return "torch.float64";
        case at::kHalf: return "torch.float16";
        case at::kBFloat16: return "torch.bfloat16";
        case at::kLong: return "torch.int64";
        case at::kInt: return "torch.int32";
        case at::kBool: return "torch.bool";
        default: return c10::toString(t);
    }
}

struct Sizes {
    int kind, T, C, B, F, H, G;
};

/* What the C loops need of a tensor: this shape, float32, on the CPU, C-contiguous. */
bool fits(const Tensor &t, at::IntArrayRef shape) {
    return t.sizes() == shape && t.scalar_type() == at::kFloat && t.device().is_cpu() && t.is_contiguous();
}

void check(const Sizes &s, const Tensor &t, at::IntArrayRef shape) {
    if (fits(t, shape)) return;
    std::ostringstream msg;
    msg << "compiled " << KIND_NAMES[s.kind] << " layer: expected a contiguous float32 CPU tensor of shape "
        << shape_text(shape) << ", got " << shape_text(t.sizes()) << " " << dtype_text(t.scalar_type()) << " on " << t.device()
        << (t.is_contiguous() ? "" : " (not contiguous)") << " (input features " << s.F << ", hidden size " << s.H
        << ")";
    TORCH_CHECK_VALUE(false, msg.str());
}

/* Sizes from the first core's weights and the resets; every tensor is checked against them. */
Sizes check_layer(int64_t kind, const Tensor &keep, TensorList xs, TensorList w, TensorList h0s, TensorList c0s,
                  bool one_step) {
    TORCH_CHECK_VALUE(kind >= 0 && kind <= 2, "compiled layer: unknown kind ", kind);
    const int C = static_cast<int>(xs.size());
    const bool lstm = kind == LSTM;
    const auto cores_message = [&] {
        return c10::str("compiled ", KIND_NAMES[kind], " layer: need inputs, weights and states for each of the ", C,
                        " cores");
    };
    TORCH_CHECK_VALUE(C >= 1 && w.size() == 4 * xs.size(), cores_message());
    const Tensor &w_ih = w[0], &w_hh = w[2 * C];
    TORCH_CHECK_VALUE(w_ih.dim() == 2 && w_hh.dim() == 2, "compiled ", KIND_NAMES[kind],
                      " layer: W_ih and W_hh must be matrices, got shapes ", shape_text(w_ih.sizes()), " and ",
                      shape_text(w_hh.sizes()));
    Sizes s{static_cast<int>(kind), 0, C, 0, static_cast<int>(w_ih.size(1)), static_cast<int>(w_hh.size(1)),
            static_cast<int>(w_ih.size(0))};
    TORCH_CHECK_VALUE(s.G == GATES[kind] * s.H, "compiled ", KIND_NAMES[kind], " layer: W_ih has ", s.G,
                      " rows, expected ", GATES[kind], " x hidden size ", s.H);
    TORCH_CHECK_VALUE(h0s.size() == xs.size() && c0s.size() == (lstm ? xs.size() : 0), cores_message());
    if (one_step) {
        TORCH_CHECK_VALUE(keep.dim() == 1, "compiled ", KIND_NAMES[kind], " step: keep must be (B,), got ",
                          shape_text(keep.sizes()));
        s.T = 1;
        s.B = static_cast<int>(keep.size(0));
    } else {
        TORCH_CHECK_VALUE(xs[0].dim() == 3, "compiled ", KIND_NAMES[kind], " layer: inputs must be (T, B, F), got ",
                          shape_text(xs[0].sizes()));
        s.T = static_cast<int>(xs[0].size(0));
        s.B = static_cast<int>(xs[0].size(1));
    }
    const int64_t T = s.T, B = s.B, F = s.F, H = s.H, G = s.G;
    check(s, keep, one_step ? at::IntArrayRef({B}) : at::IntArrayRef({T, B}));
    for (int c = 0; c < C; c++) {
        check(s, xs[c], one_step ? at::IntArrayRef({B, F}) : at::IntArrayRef({T, B, F}));
        check(s, w[c], {G, F});
        check(s, w[C + c], {G});
        check(s, w[2 * C + c], {G, H});
        check(s, w[3 * C + c], {G});
        check(s, h0s[c], {B, H});
        if (lstm) check(s, c0s[c], {B, H});
    }
    return s;
}

std::vector<Tensor> contiguous(TensorList ts) {
    std::vector<Tensor> out;
    out.reserve(ts.size());
    for (const Tensor &t : ts) out.push_back(t.contiguous());
    return out;
}

template <typename P>
std::vector<P> pointers(TensorList ts, int64_t from = 0, int64_t n = -1) {
    if (n < 0) n = static_cast<int64_t>(ts.size()) - from;
    std::vector<P> p(n);
    for (int64_t i = 0; i < n; i++) p[i] = ts[from + i].defined() ? (P)ts[from + i].data_ptr<float>() : nullptr;
    return p;
}

/* Where the saved arrays, then the scratch blocks, of one forward call sit in its buffer (element
 * offsets) and the buffer's size. Saved, each C*T*B*X: GRU prev, rz, cand, ghn; LSTM prev_h, prev_c,
 * acts, tanh_c; RNN prev. Scratch, one block per core: GRU gi, wt, g; LSTM wt; RNN wt. */
std::vector<int64_t> layout(const Sizes &s, int64_t *total) {
    const int64_t CTB = (int64_t)s.C * s.T * s.B, H = s.H, G = s.G, K = std::max(s.F, s.H), C = s.C;
    std::vector<int64_t> sizes;
    if (s.kind == GRU) sizes = {CTB * H, CTB * 2 * H, CTB * H, CTB * H, C * s.T * s.B * G, C * K * G, C * s.B * G};
    else if (s.kind == LSTM) sizes = {CTB * H, CTB * H, CTB * G, CTB * H, C * K * G};
    else sizes = {CTB * H, C * K * H};
    std::vector<int64_t> offsets;
    *total = 0;
    for (int64_t n : sizes) {
        offsets.push_back(*total);
        *total += n;
    }
    return offsets;
}

/* The forward C call: per core the outputs (T, B, H) and the LSTM's last cells (B, H), each
 * contiguous; ``buffer`` holds the saved arrays (and the scratch) at ``layout``'s offsets. */
void run_forward(const Sizes &s, int threads, const Tensor &keep, TensorList xs, TensorList w, TensorList h0s,
                 TensorList c0s, TensorList out_t, TensorList c_last_t, const Tensor &buffer) {
    const int C = s.C;
    int64_t total;
    const std::vector<int64_t> off = layout(s, &total);
    float *base = buffer.data_ptr<float>();
    const auto x = pointers<const float *>(xs), h0 = pointers<const float *>(h0s);
    const auto w_ih = pointers<const float *>(w, 0, C), b_ih = pointers<const float *>(w, C, C);
    const auto w_hh = pointers<const float *>(w, 2 * C, C), b_hh = pointers<const float *>(w, 3 * C, C);
    const auto out = pointers<float *>(out_t);
    const float *k = keep.data_ptr<float>();
    if (s.kind == GRU) {
        gru_forward(threads, s.T, C, s.B, s.F, s.H, x.data(), w_ih.data(), b_ih.data(), w_hh.data(), b_hh.data(),
                    h0.data(), k, base + off[4], base + off[5], base + off[6], base + off[0], base + off[1],
                    base + off[2], base + off[3], out.data());
    } else if (s.kind == LSTM) {
        const auto c0 = pointers<const float *>(c0s);
        const auto c_last = pointers<float *>(c_last_t);
        lstm_forward(threads, s.T, C, s.B, s.F, s.H, x.data(), w_ih.data(), b_ih.data(), w_hh.data(), b_hh.data(),
                     h0.data(), c0.data(), k, base + off[4], base + off[0], base + off[1], base + off[2],
                     base + off[3], out.data(), c_last.data());
    } else {
        rnn_forward(threads, s.T, C, s.B, s.F, s.H, x.data(), w_ih.data(), b_ih.data(), w_hh.data(), b_hh.data(),
                    h0.data(), k, base + off[1], base + off[0], out.data());
    }
}

/* One layer of C stacked cores as one autograd node. Variable inputs, in order: keep, xs (C),
 * weights (4C), h0s (C), c0s (C for the LSTM). Outputs: per core (T, B, H), then for the LSTM
 * per core the last cells (B, H). */
struct LayerFunction : public torch::autograd::Function<LayerFunction> {
    static variable_list forward(AutogradContext *ctx, int64_t kind, int64_t threads, bool save,
                                 const Tensor &keep_in, TensorList xs_in, TensorList w, TensorList h0s_in,
                                 TensorList c0s_in) {
        // inputs and states as the C loops read them (weights are parameters: checked, not copied)
        const Tensor keep = keep_in.contiguous();
        const std::vector<Tensor> xs = contiguous(xs_in), h0s = contiguous(h0s_in), c0s = contiguous(c0s_in);
        const Sizes s = check_layer(kind, keep, xs, w, h0s, c0s, false);
        int64_t total;
        layout(s, &total);
        Tensor buffer = pool().take(total);
        variable_list outs;
        for (int c = 0; c < s.C; c++) outs.push_back(at::empty({s.T, s.B, s.H}, at::kFloat));
        for (int c = 0; c < (kind == LSTM ? s.C : 0); c++) outs.push_back(at::empty({s.B, s.H}, at::kFloat));
        run_forward(s, static_cast<int>(threads), keep, xs, w, h0s, c0s, TensorList(outs.data(), s.C),
                    TensorList(outs.data() + s.C, kind == LSTM ? s.C : 0), buffer);
        if (!save) {
            pool().give(std::move(buffer));
            return outs;
        }
        std::vector<Tensor> keep_alive{keep};
        keep_alive.insert(keep_alive.end(), xs.begin(), xs.end());
        keep_alive.insert(keep_alive.end(), w.begin(), w.begin() + 3 * s.C);  // w_ih, b_ih, w_hh
        if (kind == RNN) keep_alive.insert(keep_alive.end(), outs.begin(), outs.begin() + s.C);
        ctx->save_for_backward(keep_alive);
        ctx->saved_data["sizes"] = std::vector<int64_t>{s.kind, s.T, s.C, s.B, s.F, s.H, s.G, threads};
        ctx->saved_data["buffer"] = buffer;
        return outs;
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        TORCH_CHECK(ctx->saved_data.count("buffer"),
                    "recurrent_rl: the compiled layer's saved arrays are freed after its first backward pass; "
                    "run the forward pass again instead of backward(retain_graph=True) twice");
        const Tensor buffer = ctx->saved_data["buffer"].toTensor();
        ctx->saved_data.erase("buffer");
        const auto v = ctx->saved_data["sizes"].toIntVector();
        const Sizes s{static_cast<int>(v[0]), static_cast<int>(v[1]), static_cast<int>(v[2]), static_cast<int>(v[3]),
                      static_cast<int>(v[4]), static_cast<int>(v[5]), static_cast<int>(v[6])};
        const int threads = static_cast<int>(v[7]), C = s.C;
        const variable_list saved = ctx->get_saved_variables();
        const Tensor &keep = saved[0];
        const TensorList xs(saved.data() + 1, C), w_ih(saved.data() + 1 + C, C), w_hh(saved.data() + 1 + 3 * C, C);
        const int64_t T = s.T, B = s.B, F = s.F, H = s.H, G = s.G, K = std::max(s.F, s.H);
        const bool lstm = s.kind == LSTM;
        std::vector<Tensor> d_out(C), dc_last, dx(C), dw_ih(C), db_ih(C), dw_hh(C), db_hh(C), dh0(C), dc0;
        for (int c = 0; c < C; c++) {
            d_out[c] = grads[c].contiguous();
            if (ctx->needs_input_grad(1 + c)) dx[c] = at::empty({T, B, F}, at::kFloat);
            dw_ih[c] = at::empty({G, F}, at::kFloat);
            db_ih[c] = at::empty({G}, at::kFloat);
            dw_hh[c] = at::empty({G, H}, at::kFloat);
            db_hh[c] = at::empty({G}, at::kFloat);
            dh0[c] = at::empty({B, H}, at::kFloat);
            if (lstm) {
                dc_last.push_back(grads[C + c].contiguous());
                dc0.push_back(at::empty({B, H}, at::kFloat));
            }
        }
        const int64_t scratch = s.kind == GRU ? 2 * T * B * G : s.kind == LSTM ? T * B * G : T * B * H;
        Tensor work = pool().take(C * (K * G + B * H + scratch));  // tr, dh, then the gate gradients
        float *tr = work.data_ptr<float>(), *dh = tr + C * K * G, *rest = dh + C * B * H;
        int64_t total;
        const std::vector<int64_t> off = layout(s, &total);
        const float *base = buffer.data_ptr<float>();
        const auto x_p = pointers<const float *>(xs), w_ih_p = pointers<const float *>(w_ih);
        const auto w_hh_p = pointers<const float *>(w_hh), d_out_p = pointers<const float *>(d_out);
        const auto dx_p = pointers<float *>(dx), dw_ih_p = pointers<float *>(dw_ih), db_ih_p = pointers<float *>(db_ih);
        const auto dw_hh_p = pointers<float *>(dw_hh), db_hh_p = pointers<float *>(db_hh), dh0_p = pointers<float *>(dh0);
        const float *k = keep.data_ptr<float>();
        if (s.kind == GRU) {
            gru_backward(threads, s.T, C, s.B, s.F, s.H, x_p.data(), w_ih_p.data(), w_hh_p.data(), k, base + off[0],
                         base + off[1], base + off[2], base + off[3], d_out_p.data(), rest, rest + C * T * B * G, tr,
                         dh, dx_p.data(), dw_ih_p.data(), db_ih_p.data(), dw_hh_p.data(), db_hh_p.data(),
                         dh0_p.data());
        } else if (lstm) {
            const auto dc_last_p = pointers<const float *>(dc_last);
            const auto dc0_p = pointers<float *>(dc0);
            lstm_backward(threads, s.T, C, s.B, s.F, s.H, x_p.data(), w_ih_p.data(), w_hh_p.data(), k, base + off[0],
                          base + off[1], base + off[2], base + off[3], d_out_p.data(), dc_last_p.data(), rest, tr,
                          dh, dx_p.data(), dw_ih_p.data(), db_ih_p.data(), dw_hh_p.data(), db_hh_p.data(),
                          dh0_p.data(), dc0_p.data());
        } else {
            const auto out_p = pointers<const float *>(TensorList(saved.data() + 1 + 4 * C, C));
            rnn_backward(threads, s.T, C, s.B, s.F, s.H, x_p.data(), w_ih_p.data(), w_hh_p.data(), k, base + off[0],
                         out_p.data(), d_out_p.data(), rest, tr, dh, dx_p.data(), dw_ih_p.data(), db_ih_p.data(),
                         dw_hh_p.data(), db_hh_p.data(), dh0_p.data());
        }
        pool().give(std::move(work));  // nothing returned views these two
        pool().give(Tensor(buffer));
        // one gradient per forward argument: kind, threads, save, keep, then the tensor lists
        variable_list result{Tensor(), Tensor(), Tensor(), Tensor()};
        for (auto *group : {&dx, &dw_ih, &db_ih, &dw_hh, &db_hh, &dh0, &dc0}) {
            result.insert(result.end(), group->begin(), group->end());
        }
        return result;
    }
};

/* torch.ops.recurrent_rl.layer: one layer over a (T, B) batch, with gradients when any input
 * needs them (and grad mode is on). */
std::vector<Tensor> layer(int64_t kind, int64_t threads, const Tensor &keep, TensorList xs, TensorList w,
                          TensorList h0s, TensorList c0s) {
    bool save = false;
    if (at::GradMode::is_enabled()) {
        for (auto list : {xs, w, h0s, c0s}) {
            for (const Tensor &t : list) save = save || t.requires_grad();
        }
    }
    return LayerFunction::apply(kind, threads, save, keep, xs, w, h0s, c0s);
}

/* torch.ops.recurrent_rl.step: one step of every layer, no autograd (rollouts, predict).
 * xs per core (B, F); weights per layer in ``layer``'s flat order (4 C tensors a layer); hs and cs
 * (LSTM) per core (L, B, H); keep (B,). Returns per core the output (B, H), then per core the next
 * states (L, B, H): h, then c for the LSTM. Each layer's outputs are written straight into the
 * next states (the output is a view of the top layer's h), so nothing is copied. */
std::vector<Tensor> step(int64_t kind, const Tensor &keep_in, TensorList xs_in, TensorList w, TensorList hs_in,
                         TensorList cs_in) {
    const size_t C = xs_in.size();
    const bool lstm = kind == LSTM;
    TORCH_CHECK_VALUE(kind >= 0 && kind <= 2, "compiled step: unknown kind ", kind);
    const char *name = KIND_NAMES[kind];
    TORCH_CHECK_VALUE(C >= 1 && hs_in.size() == C && cs_in.size() == (lstm ? C : 0), "compiled ", name,
                      " step: need inputs and states for each of the ", C, " cores");
    TORCH_CHECK_VALUE(hs_in[0].dim() == 3, "compiled ", name, " step: states must be (num_layers, B, H), got ",
                      shape_text(hs_in[0].sizes()));
    const int64_t L = hs_in[0].size(0);
    TORCH_CHECK_VALUE(w.size() == 4 * C * L, "compiled ", name, " step: need 4 weights per core and layer (",
                      4 * C * L, "), got ", w.size());
    const Tensor keep = keep_in.contiguous();
    std::vector<Tensor> x = contiguous(xs_in);
    const std::vector<Tensor> hs = contiguous(hs_in), cs = contiguous(cs_in);
    std::vector<Tensor> next_h(C), next_c(lstm ? C : 0);
    for (size_t c = 0; c < C; c++) {
        next_h[c] = at::empty_like(hs[c], at::MemoryFormat::Contiguous);
        if (lstm) next_c[c] = at::empty_like(cs[c], at::MemoryFormat::Contiguous);
    }
    std::vector<Tensor> h0(C), c0(lstm ? C : 0), out(C), c_last(lstm ? C : 0);
    for (int64_t l = 0; l < L; l++) {
        const TensorList wl(w.data() + 4 * C * l, 4 * C);
        for (size_t c = 0; c < C; c++) {
            TORCH_CHECK_VALUE(hs[c].dim() == 3 && hs[c].size(0) == L && (!lstm || (cs[c].dim() == 3 && cs[c].size(0) == L)),
                              "compiled ", name, " step: every state must be (", L,
                              ", B, H), got ", shape_text(hs[c].sizes()));
            h0[c] = hs[c][l];
            out[c] = next_h[c][l];
            if (lstm) {
                c0[c] = cs[c][l];
                c_last[c] = next_c[c][l];
            }
        }
        const Sizes s = check_layer(kind, keep, x, wl, h0, c0, true);
        for (size_t c = 0; c < C; c++) check(s, out[c], {s.B, s.H});  // h0's shape, so next_h fits
        int64_t total;
        layout(s, &total);
        Tensor buffer = pool().take(total);
        run_forward(s, 1, keep, x, wl, h0, c0, out, c_last, buffer);
        pool().give(std::move(buffer));
        x = out;
    }
    std::vector<Tensor> result(x.begin(), x.end());
    result.insert(result.end(), next_h.begin(), next_h.end());
    result.insert(result.end(), next_c.begin(), next_c.end());
    return result;
}


/* ---------------------------------------------------------------- linear scan */

/* h_t = a_t * h_{t-1} + b_t over dim 0 of (T, N) float32 tensors (N = everything after time),
 * from h0 (N): the recurrence of the scan memories (minGRU, minLSTM), one pass in time instead of
 * the associative scan's log2(T) passes over the whole tensor. Backward: with g the gradient
 * reaching h_t (its own plus what flows back from t+1), grad b_t = g, grad a_t = g h_{t-1}, and
 * a_t g flows on to h_{t-1}; after t = 0 it is grad h0. */
struct ScanFunction : public torch::autograd::Function<ScanFunction> {
    static Tensor forward(AutogradContext *ctx, const Tensor &a_in, const Tensor &b_in, const Tensor &h0_in) {
        TORCH_CHECK_VALUE(a_in.dim() >= 1 && a_in.sizes() == b_in.sizes(), "compiled scan: a and b must have one shape, got ",
                          a_in.sizes(), " and ", b_in.sizes());
        TORCH_CHECK_VALUE(h0_in.numel() * std::max<int64_t>(a_in.size(0), 1) == a_in.numel(),
                          "compiled scan: h0 must have one entry per column of a (", a_in.numel() / std::max<int64_t>(a_in.size(0), 1),
                          "), got ", h0_in.numel());
        for (const Tensor *t : {&a_in, &b_in, &h0_in}) {
            TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->device().is_cpu(),
                              "compiled scan: expected float32 CPU tensors, got ", t->scalar_type(), " on ", t->device());
        }
        const Tensor a = a_in.contiguous(), b = b_in.contiguous(), h0 = h0_in.contiguous();
        const int64_t T = a.size(0), N = T ? a.numel() / T : 0;
        Tensor h = at::empty_like(a);
        const float *ap = a.data_ptr<float>(), *bp = b.data_ptr<float>(), *prev = h0.data_ptr<float>();
        float *hp = h.data_ptr<float>();
        for (int64_t t = 0; t < T; t++) {
            const float *at_ = ap + t * N, *bt = bp + t * N;
            float *ht = hp + t * N;
            for (int64_t n = 0; n < N; n++) ht[n] = at_[n] * prev[n] + bt[n];
            prev = ht;
        }
        ctx->save_for_backward({a, h0, h});
        return h;
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads) {
        const variable_list saved = ctx->get_saved_variables();
        const Tensor &a = saved[0], &h0 = saved[1], &h = saved[2];
        const int64_t T = a.size(0), N = T ? a.numel() / T : 0;
        if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
        const Tensor dh = grads[0].contiguous();
        Tensor da = at::empty_like(a), db = at::empty_like(a), dh0 = at::empty_like(h0);
        std::vector<float> g(static_cast<size_t>(N), 0.0f);
        const float *ap = a.data_ptr<float>(), *hp = h.data_ptr<float>(), *h0p = h0.data_ptr<float>();
        const float *dhp = dh.data_ptr<float>();
        float *dap = da.data_ptr<float>(), *dbp = db.data_ptr<float>(), *gp = g.data();
        for (int64_t t = T - 1; t >= 0; t--) {
            const float *prev = t ? hp + (t - 1) * N : h0p, *at_ = ap + t * N, *dht = dhp + t * N;
            float *dat = dap + t * N, *dbt = dbp + t * N;
            for (int64_t n = 0; n < N; n++) {
                const float gn = gp[n] + dht[n];
                dbt[n] = gn;
                dat[n] = gn * prev[n];
                gp[n] = gn * at_[n];
            }
        }
        std::copy(g.begin(), g.end(), dh0.data_ptr<float>());
        return {da, db, dh0.view(h0.sizes())};
    }
};

/* torch.ops.recurrent_rl.scan(a, b, h0) -> h: see ScanFunction. */
Tensor scan(const Tensor &a, const Tensor &b, const Tensor &h0) { return ScanFunction::apply(a, b, h0); }

}  // namespace

TORCH_LIBRARY(recurrent_rl, m) {
    m.def("layer(int kind, int threads, Tensor keep, Tensor[] xs, Tensor[] weights, Tensor[] h0s, Tensor[] c0s) -> Tensor[]",
          &layer);
    m.def("step(int kind, Tensor keep, Tensor[] xs, Tensor[] weights, Tensor[] h0s, Tensor[] c0s) -> Tensor[]", &step);
    m.def("scan(Tensor a, Tensor b, Tensor h0) -> Tensor", &scan);
}
