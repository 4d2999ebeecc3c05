"""Converters from published checkpoints to ours (issue 12): :mod:`arfm.convert.official`."""
