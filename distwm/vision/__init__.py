"""Image encoders and decoders of the model families (one module each, torch, imported on use)."""
