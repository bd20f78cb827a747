"""Torch-free image helpers: I/O, MATLAB bicubic, PSNR/SSIM-Y, dataset folders, evaluation loop.

Imports nothing, so `import drq.imaging.<module>` from `serve/` never pulls in torch.
"""
