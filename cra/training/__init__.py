"""Training: QLoRA adapters from curated datasets (`cra train`)."""
