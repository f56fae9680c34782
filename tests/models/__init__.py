"""Tests of ``lab.models``: the backbones, their heads, freezing and weight loading."""
