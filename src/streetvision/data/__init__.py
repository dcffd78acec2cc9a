"""Data: sources (folder, csv, hf, synthetic), robust decoding with quarantine, leak-proof splits, validator-style
transforms, Lightning data modules, and the embedded synthetic street-scene generator."""
