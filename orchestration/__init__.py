"""How runs are driven: plan, Dask executor, sweeps and their map. Stands above the science package
(classweights) and the stages; nothing in classweights imports from here."""
