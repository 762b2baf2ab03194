"""`conr ui`: the web UI. `service` does the work (no widgets); `app` lays out the Gradio page."""
