"""Prepare CIFAR-10 / CIFAR-100 or a DomainNet domain for the paper paths of ``lossmooth.data``.

    python scripts/prepare_data.py {cifar10,cifar100,domain_net/<domain>} [--data-dir DIR]

(``<domain>``: clipart, infograph, painting, quickdraw, real, sketch; DomainNet is written under
``DIR/domain_net/<domain>/<version>/``.)

Downloads the stock tensorflow-datasets builder's source files (needs network to the dataset host)
and writes them in the ``array_record`` format, which ``load_tfds_images`` reads by random access
without TensorFlow, under ``DIR/<name>/<version>/``. Point ``data.data_dir`` at ``DIR`` afterwards.

Preparing (only this step) needs TensorFlow: the stock builder reads the archives with
``tf.io.gfile`` and encodes the images with ``tf.image.encode_png``; ``pip install tensorflow-cpu``
in the environment that runs this script (training reads the result without it).
"""
import argparse
import importlib.util
import os
import sys

DATASETS = ("cifar10", "cifar100") + tuple(
    f"domain_net/{d}" for d in ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=DATASETS)
    ap.add_argument("--data-dir", default=os.path.expanduser("~/tensorflow_datasets"),
                    help="tfds data folder (default: ~/tensorflow_datasets)")
    args = ap.parse_args(argv)

    if importlib.util.find_spec("tensorflow") is None:
        sys.exit(f"prepare_data.py: the stock tfds '{args.name}' builder needs TensorFlow to prepare "
                 "the data (reading it later does not); install it with: pip install tensorflow-cpu")
    import tensorflow_datasets as tfds

    data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    builder = tfds.builder(args.name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    print(f"{args.name}: prepared {builder.info.version} (array_record) in {builder.data_dir}")


if __name__ == "__main__":
    main()
