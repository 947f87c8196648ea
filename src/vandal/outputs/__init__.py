"""What a run writes: prediction files, the HTML report, the run folder, overlays."""
