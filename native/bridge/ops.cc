// The tensor operations reachable from JS: one table of ATen calls, addressed by index.
// `opNames()` lists them; `op(index, ...args)` runs one synchronously on the JS thread (lib/ checks
// the arguments first; ATen's own checks back them up and become EmotorchErrors).
#include "bridge/bridge.h"

#include "kernels/attention.h"
#include "kernels/positions.h"

#include <cmath>
#include <variant>

namespace et::bridge {
namespace {

using Out = std::variant<at::Tensor, std::vector<at::Tensor>>;

struct Args {
  const Napi::CallbackInfo& info;
  Napi::Value v(size_t i) const { return info[i + 1]; }  // info[0] is the op index
  bool none(size_t i) const { return v(i).IsNull() || v(i).IsUndefined(); }
  bool is_tensor(size_t i) const { return v(i).IsObject() && !v(i).IsArray(); }
  at::Tensor t(size_t i) const { return to_tensor(v(i), "tensor argument"); }
  std::optional<at::Tensor> ot(size_t i) const { return none(i) ? std::nullopt : std::optional<at::Tensor>(t(i)); }
  std::vector<at::Tensor> ts(size_t i) const { return to_tensors(v(i), "tensors"); }
  // Integral JS numbers become integer scalars, so int tensors stay int (as Python's `t + 1`).
  at::Scalar s(size_t i) const {
    Napi::Value x = v(i);
    if (x.IsBoolean()) return at::Scalar(x.As<Napi::Boolean>().Value());
    double d = to_double(x, "scalar");
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.007199254740992e15) return at::Scalar(static_cast<int64_t>(d));
    return at::Scalar(d);
  }
  std::optional<at::Scalar> os(size_t i) const { return none(i) ? std::nullopt : std::optional<at::Scalar>(s(i)); }
  double d(size_t i) const { return to_double(v(i), "number"); }
  int64_t i64(size_t i) const { return static_cast<int64_t>(to_double(v(i), "integer")); }
  std::optional<int64_t> oi64(size_t i) const { return none(i) ? std::nullopt : std::optional<int64_t>(i64(i)); }
  bool b(size_t i) const { return v(i).ToBoolean().Value(); }
  std::vector<int64_t> ints(size_t i) const { return to_ints(v(i), "dims"); }
  // null → all dims (an empty list for ATen's reductions)
  at::OptionalIntArrayRef odims(size_t i, std::vector<int64_t>& storage) const {
    if (none(i)) return std::nullopt;
    storage = ints(i);
    return at::OptionalIntArrayRef(storage);
  }
  std::string str(size_t i) const { return to_string(v(i), "string"); }
  at::TensorOptions opts(size_t dtype_i, size_t device_i) const {
    auto o = at::TensorOptions().dtype(none(dtype_i) ? at::kFloat : to_dtype(v(dtype_i)));
    return none(device_i) ? o : o.device(to_device(v(device_i)));
  }
};

// Second operand: a Tensor or a JS number.
#define BINARY(name, expr_tt, expr_ts) \
  {name, [](const Args& a) -> Out {    \
    at::Tensor x = a.t(0);             \
    if (a.is_tensor(1)) {              \
      at::Tensor y = a.t(1);           \
      return expr_tt;                  \
    }                                  \
    at::Scalar y = a.s(1);             \
    return expr_ts;                    \
  }}
#define UNARY(name, expr)           \
  {name, [](const Args& a) -> Out { \
    at::Tensor x = a.t(0);          \
    return expr;                    \
  }}

using Fn = Out (*)(const Args&);
struct OpDef {
  const char* name;
  Fn fn;
};

const std::vector<OpDef>& table() {
  static const std::vector<OpDef> ops = {
      // arithmetic and comparison (broadcasting)
      BINARY("add", at::add(x, y), at::add(x, y)),
      BINARY("sub", at::sub(x, y), at::sub(x, y)),
      BINARY("mul", at::mul(x, y), at::mul(x, y)),
      BINARY("div", at::div(x, y), at::div(x, y)),
      BINARY("pow", at::pow(x, y), at::pow(x, y)),
      BINARY("remainder", at::remainder(x, y), at::remainder(x, y)),
      BINARY("maximum", at::maximum(x, y), at::clamp_min(x, y)),
      BINARY("minimum", at::minimum(x, y), at::clamp_max(x, y)),
      BINARY("eq", at::eq(x, y), at::eq(x, y)),
      BINARY("ne", at::ne(x, y), at::ne(x, y)),
      BINARY("lt", at::lt(x, y), at::lt(x, y)),
      BINARY("le", at::le(x, y), at::le(x, y)),
      BINARY("gt", at::gt(x, y), at::gt(x, y)),
      BINARY("ge", at::ge(x, y), at::ge(x, y)),
      BINARY("logical_and", at::logical_and(x, y), at::logical_and(x, at::scalar_tensor(y, x.options()))),
      BINARY("logical_or", at::logical_or(x, y), at::logical_or(x, at::scalar_tensor(y, x.options()))),
      {"rsub", [](const Args& a) -> Out { return at::rsub(a.t(0), a.s(1)); }},
      {"rdiv", [](const Args& a) -> Out { return at::div(at::scalar_tensor(a.s(1), a.t(0).options()), a.t(0)); }},
      {"matmul", [](const Args& a) -> Out { return at::matmul(a.t(0), a.t(1)); }},
      // elementwise
      UNARY("neg", at::neg(x)), UNARY("abs", at::abs(x)), UNARY("exp", at::exp(x)), UNARY("log", at::log(x)),
      UNARY("log1p", at::log1p(x)), UNARY("sqrt", at::sqrt(x)), UNARY("rsqrt", at::rsqrt(x)), UNARY("sin", at::sin(x)),
      UNARY("cos", at::cos(x)), UNARY("tanh", at::tanh(x)), UNARY("sigmoid", at::sigmoid(x)), UNARY("relu", at::relu(x)),
      UNARY("gelu", at::gelu(x)), UNARY("silu", at::silu(x)), UNARY("floor", at::floor(x)), UNARY("ceil", at::ceil(x)),
      UNARY("round", at::round(x)), UNARY("sign", at::sign(x)), UNARY("reciprocal", at::reciprocal(x)),
      UNARY("square", at::square(x)), UNARY("logical_not", at::logical_not(x)), UNARY("isnan", at::isnan(x)),
      UNARY("isinf", at::isinf(x)), UNARY("isfinite", at::isfinite(x)), UNARY("clone", x.clone()),
      UNARY("detach", x.detach()), UNARY("contiguous", x.contiguous()),
      {"clamp", [](const Args& a) -> Out { return at::clamp(a.t(0), a.os(1), a.os(2)); }},
      {"where", [](const Args& a) -> Out {
         at::Tensor c = a.t(0);
         if (a.is_tensor(1) && a.is_tensor(2)) return at::where(c, a.t(1), a.t(2));
         if (a.is_tensor(1)) return at::where(c, a.t(1), a.s(2));
         if (a.is_tensor(2)) return at::where(c, a.s(1), a.t(2));
         return at::where(c, a.s(1), a.s(2));
       }},
      {"masked_fill", [](const Args& a) -> Out { return a.t(0).masked_fill(a.t(1), a.s(2)); }},
      {"to", [](const Args& a) -> Out {
         at::Tensor x = a.t(0);
         auto dev = a.none(2) ? x.device() : to_device(a.v(2));
         auto dt = a.none(1) ? x.scalar_type() : to_dtype(a.v(1));
         return x.to(dev, dt);
       }},
      // reductions: (x, dims|null, keepdim)
      {"sum", [](const Args& a) -> Out { std::vector<int64_t> s; return at::sum(a.t(0), a.odims(1, s), a.b(2)); }},
      {"mean", [](const Args& a) -> Out { std::vector<int64_t> s; return at::mean(a.t(0), a.odims(1, s), a.b(2)); }},
      {"var", [](const Args& a) -> Out { std::vector<int64_t> s; return at::var(a.t(0), a.odims(1, s), a.d(3), a.b(2)); }},
      {"std", [](const Args& a) -> Out { std::vector<int64_t> s; return at::std(a.t(0), a.odims(1, s), a.d(3), a.b(2)); }},
      {"logsumexp", [](const Args& a) -> Out { return at::logsumexp(a.t(0), a.ints(1), a.b(2)); }},
      {"norm", [](const Args& a) -> Out {
         std::vector<int64_t> s = a.none(2) ? std::vector<int64_t>{} : a.ints(2);
         return at::linalg_vector_norm(a.t(0), a.s(1), s.empty() ? at::OptionalIntArrayRef() : at::OptionalIntArrayRef(s), a.b(3));
       }},
      // (x, dim|null, keepdim): null reduces everything
      {"max", [](const Args& a) -> Out { auto d = a.oi64(1); return d ? std::get<0>(at::max(a.t(0), *d, a.b(2))) : at::max(a.t(0)); }},
      {"min", [](const Args& a) -> Out { auto d = a.oi64(1); return d ? std::get<0>(at::min(a.t(0), *d, a.b(2))) : at::min(a.t(0)); }},
      {"argmax", [](const Args& a) -> Out { return at::argmax(a.t(0), a.oi64(1), a.b(2)); }},
      {"argmin", [](const Args& a) -> Out { return at::argmin(a.t(0), a.oi64(1), a.b(2)); }},
      {"all", [](const Args& a) -> Out { auto d = a.oi64(1); return d ? at::all(a.t(0), *d, a.b(2)) : at::all(a.t(0)); }},
      {"any", [](const Args& a) -> Out { auto d = a.oi64(1); return d ? at::any(a.t(0), *d, a.b(2)) : at::any(a.t(0)); }},
      {"cumsum", [](const Args& a) -> Out { return at::cumsum(a.t(0), a.i64(1)); }},
      {"softmax", [](const Args& a) -> Out { return at::softmax(a.t(0), a.i64(1)); }},
      {"log_softmax", [](const Args& a) -> Out { return at::log_softmax(a.t(0), a.i64(1)); }},
      {"topk", [](const Args& a) -> Out {
         auto [v, i] = at::topk(a.t(0), a.i64(1), a.i64(2), a.b(3), true);
         return std::vector<at::Tensor>{v, i};
       }},
      {"sort", [](const Args& a) -> Out {
         auto [v, i] = at::sort(a.t(0), a.i64(1), a.b(2));
         return std::vector<at::Tensor>{v, i};
       }},
      // shapes and indexing
      {"reshape", [](const Args& a) -> Out { return a.t(0).reshape(a.ints(1)); }},
      {"view", [](const Args& a) -> Out { return a.t(0).view(a.ints(1)); }},
      {"transpose", [](const Args& a) -> Out { return a.t(0).transpose(a.i64(1), a.i64(2)); }},
      {"permute", [](const Args& a) -> Out { return a.t(0).permute(a.ints(1)); }},
      {"squeeze", [](const Args& a) -> Out { auto d = a.oi64(1); return d ? a.t(0).squeeze(*d) : a.t(0).squeeze(); }},
      {"unsqueeze", [](const Args& a) -> Out { return a.t(0).unsqueeze(a.i64(1)); }},
      {"flatten", [](const Args& a) -> Out { return a.t(0).flatten(a.i64(1), a.i64(2)); }},
      {"expand", [](const Args& a) -> Out { return a.t(0).expand(a.ints(1)); }},
      {"repeat", [](const Args& a) -> Out { return a.t(0).repeat(a.ints(1)); }},
      {"slice", [](const Args& a) -> Out { return a.t(0).slice(a.i64(1), a.oi64(2), a.oi64(3), a.i64(4)); }},
      {"select", [](const Args& a) -> Out { return a.t(0).select(a.i64(1), a.i64(2)); }},
      {"as_strided", [](const Args& a) -> Out { return a.t(0).as_strided(a.ints(1), a.ints(2), a.i64(3)); }},
      {"index_select", [](const Args& a) -> Out { return at::index_select(a.t(0), a.i64(1), a.t(2)); }},
      {"gather", [](const Args& a) -> Out { return at::gather(a.t(0), a.i64(1), a.t(2)); }},
      {"index", [](const Args& a) -> Out {  // x[idx] along dim 0 with a long or bool tensor
         c10::List<std::optional<at::Tensor>> idx;
         idx.push_back(a.t(1));
         return at::index(a.t(0), idx);
       }},
      {"cat", [](const Args& a) -> Out { return at::cat(a.ts(0), a.i64(1)); }},
      {"stack", [](const Args& a) -> Out { return at::stack(a.ts(0), a.i64(1)); }},
      {"split", [](const Args& a) -> Out { return at::split(a.t(0), a.i64(1), a.i64(2)); }},
      {"chunk", [](const Args& a) -> Out { return at::chunk(a.t(0), a.i64(1), a.i64(2)); }},
      {"tril", [](const Args& a) -> Out { return at::tril(a.t(0), a.i64(1)); }},
      {"triu", [](const Args& a) -> Out { return at::triu(a.t(0), a.i64(1)); }},
      {"one_hot", [](const Args& a) -> Out { return at::one_hot(a.t(0), a.i64(1)); }},
      // creation: (..., dtype|null, device|null)
      {"zeros", [](const Args& a) -> Out { return at::zeros(a.ints(0), a.opts(1, 2)); }},
      {"ones", [](const Args& a) -> Out { return at::ones(a.ints(0), a.opts(1, 2)); }},
      {"full", [](const Args& a) -> Out { return at::full(a.ints(0), a.s(1), a.opts(2, 3)); }},
      {"randn", [](const Args& a) -> Out { return at::randn(a.ints(0), a.opts(1, 2)); }},
      {"rand", [](const Args& a) -> Out { return at::rand(a.ints(0), a.opts(1, 2)); }},
      {"randint", [](const Args& a) -> Out {
         auto o = a.none(3) ? at::TensorOptions().dtype(at::kLong) : at::TensorOptions().dtype(to_dtype(a.v(3)));
         if (!a.none(4)) o = o.device(to_device(a.v(4)));
         return at::randint(a.i64(0), a.i64(1), a.ints(2), o);
       }},
      {"randperm", [](const Args& a) -> Out { return at::randperm(a.i64(0), at::TensorOptions().dtype(at::kLong)); }},
      {"arange", [](const Args& a) -> Out {
         auto o = a.none(3) ? at::TensorOptions() : at::TensorOptions().dtype(to_dtype(a.v(3)));
         if (!a.none(4)) o = o.device(to_device(a.v(4)));
         return at::arange(a.s(0), a.s(1), a.s(2), o);
       }},
      {"linspace", [](const Args& a) -> Out { return at::linspace(a.s(0), a.s(1), a.i64(2), a.opts(3, 4)); }},
      {"eye", [](const Args& a) -> Out { return at::eye(a.i64(0), a.opts(1, 2)); }},
      // losses: reduction 0 none, 1 mean, 2 sum (at::Reduction)
      {"cross_entropy", [](const Args& a) -> Out {
         return at::cross_entropy_loss(a.t(0), a.t(1), a.ot(2), a.i64(3), a.i64(4), a.d(5));
       }},
      {"nll_loss", [](const Args& a) -> Out { return at::nll_loss_nd(a.t(0), a.t(1), a.ot(2), a.i64(3), a.i64(4)); }},
      {"mse_loss", [](const Args& a) -> Out { return at::mse_loss(a.t(0), a.t(1), a.i64(2)); }},
      {"l1_loss", [](const Args& a) -> Out { return at::l1_loss(a.t(0), a.t(1), a.i64(2)); }},
      {"bce_with_logits", [](const Args& a) -> Out {
         return at::binary_cross_entropy_with_logits(a.t(0), a.t(1), a.ot(2), a.ot(3), a.i64(4));
       }},
      // functional layers
      {"linear", [](const Args& a) -> Out { return at::linear(a.t(0), a.t(1), a.ot(2)); }},
      {"scaled_dot_product_attention",
       [](const Args& a) -> Out {
         return et::nn::scaled_dot_product_attention(a.t(0), a.t(1), a.t(2), a.ot(3), a.none(4) ? std::nullopt : std::optional<double>(a.d(4)),
                                                     a.b(5), a.b(6));
       }},
      // (x (B, heads, T, D), cos, sin (B, T, D)): transformers' apply_rotary_pos_emb on one projection
      {"apply_rotary_pos_emb",
       [](const Args& a) -> Out { return et::nn::rotary_rows(a.t(0).transpose(1, 2), a.t(1), a.t(2)).transpose(1, 2); }},
      {"dropout", [](const Args& a) -> Out { return at::dropout(a.t(0), a.d(1), a.b(2)); }},
      {"layer_norm", [](const Args& a) -> Out { return at::layer_norm(a.t(0), a.ints(1), a.ot(2), a.ot(3), a.d(4)); }},
      {"embedding", [](const Args& a) -> Out { return at::embedding(a.t(0), a.t(1)); }},
      // (x, [outH, outW], mode, align_corners, antialias): torch.nn.functional.interpolate on (N, C, H, W)
      {"interpolate", [](const Args& a) -> Out {
         std::vector<int64_t> size = a.ints(1);
         std::string mode = a.str(2);
         bool ac = a.b(3), aa = a.b(4);
         if (mode == "bilinear") return aa ? at::_upsample_bilinear2d_aa(a.t(0), size, ac) : at::upsample_bilinear2d(a.t(0), size, ac);
         if (mode == "bicubic") return aa ? at::_upsample_bicubic2d_aa(a.t(0), size, ac) : at::upsample_bicubic2d(a.t(0), size, ac);
         if (mode == "nearest") return at::upsample_nearest2d(a.t(0), size);
         TORCH_CHECK(false, "interpolate: unknown mode '", mode, "'");
       }},
      // mixed precision: libtorch's own GradScaler kernels (in place; return the state they update)
      {"amp_unscale", [](const Args& a) -> Out {  // (grads, found_inf, inv_scale)
         auto grads = a.ts(0);
         at::Tensor found = a.t(1);
         at::_amp_foreach_non_finite_check_and_unscale_(grads, found, a.t(2));
         return found;
       }},
      {"amp_update_scale", [](const Args& a) -> Out {  // (scale, growth_tracker, found_inf, growth, backoff, interval)
         at::Tensor scale = a.t(0), tracker = a.t(1);
         return at::_amp_update_scale_(scale, tracker, a.t(2), a.d(3), a.d(4), a.i64(5));
       }},
  };
  return ops;
}

Napi::Value OpNames(const Napi::CallbackInfo& info) {
  const auto& ops = table();
  auto arr = Napi::Array::New(info.Env(), ops.size());
  for (size_t i = 0; i < ops.size(); ++i) arr.Set(i, Napi::String::New(info.Env(), ops[i].name));
  return arr;
}

Napi::Value Op(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    const auto& ops = table();
    auto idx = static_cast<size_t>(to_double(info[0], "op index"));
    if (idx >= ops.size()) throw CodedError("ERR_INVALID_ARG", "unknown op index " + std::to_string(idx));
    Args args{info};
    Out out = ops[idx].fn(args);
    if (auto* t = std::get_if<at::Tensor>(&out)) return TensorHandle::wrap(info.Env(), std::move(*t));
    return from_tensors(info.Env(), std::get<std::vector<at::Tensor>>(out));
  });
}

}  // namespace

void init_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("opNames", Napi::Function::New(env, OpNames));
  exports.Set("op", Napi::Function::New(env, Op));
}

}  // namespace et::bridge
