"""Training CoNR: data from `conr synth` / `conr poses`, losses, the training loop and evaluation."""
