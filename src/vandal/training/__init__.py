"""Training APRIL-GAN's tap adapters: losses, the 2x2 mosaic, the data plan and the loop."""
