#include "blocks/checkpoint.h"

#include <torch/autograd.h>

#include <mutex>

namespace et::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Saved : torch::CustomClassHolder {
  LayerFn fn;
  at::Generator gen;
  at::Tensor rng;  // the generator's state before the forward
};

at::Tensor swap_state(at::Generator& gen, const at::Tensor& to) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  at::Tensor was = gen.get_state();
  gen.set_state(to);
  return was;
}

struct Checkpoint : torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const LayerFn& fn) {
    auto s = c10::make_intrusive<Saved>();
    s->fn = fn;
    s->gen = at::globalContext().defaultGenerator(x.device());
    {
      std::lock_guard<std::mutex> lock(s->gen.mutex());
      s->rng = s->gen.get_state();
    }
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(s);
    return fn(x);  // autograd is off inside a Function's forward
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto s = c10::static_intrusive_pointer_cast<Saved>(ctx->saved_data["fn"].toCapsule());
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor now = swap_state(s->gen, s->rng);
    at::Tensor y;
    try {
      at::AutoGradMode on(true);
      y = s->fn(x);
    } catch (...) {
      swap_state(s->gen, now);
      throw;
    }
    swap_state(s->gen, now);
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpoint(LayerFn fn, const at::Tensor& x) {
  // A leaf input that needs no gradient would leave the Function out of the graph (and the
  // layer's parameters without gradients): give autograd a copy that asks for one.
  at::Tensor in = x.requires_grad() ? x : x.detach().requires_grad_(true);
  return Checkpoint::apply(in, fn);
}

}  // namespace et::nn
