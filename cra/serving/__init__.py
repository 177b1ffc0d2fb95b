"""Serving: vLLM with one base model and per-request LoRA adapters."""
