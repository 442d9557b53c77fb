"""The bench: bench files, bring-up and tear-down, and the simulated devices behind real interfaces."""
