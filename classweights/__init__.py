"""classweights: does weighting the loss by class help a CNN on unbalanced data?"""
