"""vae_core: the small PyTorch package behind the VAE book."""

from vae_core.model import VAE, VAEConfig

__all__ = ["VAE", "VAEConfig"]
__version__ = "0.1.0"
