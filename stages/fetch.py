"""fetch: the chosen source as arrays (uint8 images or float32 feature vectors) and class names
(data/raw.npz) and where they came from. The only stage that decodes images or parses CSV: the
later ones read these arrays."""
if not __package__:  # run by path, Python would not find the project's packages
    raise SystemExit("error: run stages as `python -m stages.fetch` from the project root, or `dvc repro`")

from classweights.cli import run_stage
from classweights.datasets import load_source
from classweights.files import write_arrays, write_json
from classweights.params import load_params
from classweights.paths import DOWNLOADS, PROVENANCE, RAW


def main():
    params = load_params()
    arrays, provenance = load_source(params.data, DOWNLOADS)
    write_arrays(RAW, **arrays)
    write_json(PROVENANCE, provenance)
    unit = "rows" if arrays["x_train"].ndim == 2 else "images"
    each = " features" if unit == "rows" else ""
    test = f"{len(arrays['y_test'])} test {unit}" if len(arrays["y_test"]) else "no test half"
    print(f"fetch: {params.data.source}: {len(arrays['class_names'])} classes, {len(arrays['y_train'])} training {unit} "
          f"and {test}, {'x'.join(map(str, arrays['x_train'].shape[1:]))}{each} each, from {provenance['origin']}")


if __name__ == "__main__":
    run_stage(main)
