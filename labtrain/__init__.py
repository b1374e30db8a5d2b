"""labtrain's bottom layer, imported by every package and importing none of them: its domain errors
(`labtrain.errors`)."""
