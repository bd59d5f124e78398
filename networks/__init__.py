"""Your own backbones: model.backbone python:networks.<module>:<function> (docs/models.md).

The train stages depend on this whole folder, so editing a file here re-trains, and nothing
before training re-runs.
"""
