"""timm layers (placeholder while being written)."""
