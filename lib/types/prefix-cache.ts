// What a causal LM's prompt prefix cache reports: one declaration for the binding (native.ts), the
// model (nn/llama.ts) and the chat adapters (data/chat.ts).

/** What a causal LM's prompt prefix cache holds and has done (`LlamaForCausalLM.setPrefixCache`, `prefixCacheStats`). */
export interface PrefixCacheStats {
  /** Bytes it may hold (0: off). */
  capacity: number;
  /** Bytes of keys and values it holds now. */
  bytes: number;
  /** Prompts it holds now. */
  entries: number;
  /** Prompts looked up since the last `setPrefixCache`. */
  lookups: number;
  /** Of those, prompts that began with a held prompt's positions. */
  hits: number;
  /** Prompt positions taken from the cache instead of run. */
  reused: number;
}
