"""Entry points people use at a shell: the `stsync` command, the preview, the demo."""
