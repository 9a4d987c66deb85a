"""Which Fashion-MNIST teacher reaches a target test top-1, and at what training time? Each
candidate is a ``FashionCNN`` of the given widths and depths (``fmnist_t`` is 16 32 64 / 1 1 2),
trained by kdbench's own teacher store, as a profile would train it: the recipe, epochs, batch
size and seed of a spec, with the images as they are or, with ``--augment``, the teacher-only
crop+flip (``teacher_augment``), on one thread.

    python benchmarks/fmnist_teacher.py --widths 32 64 128 --depths 1 1 2 --epochs 15 30 \\
        --recipe fmnist-cosine --augment --cache DIR

Prints per epoch count the teacher's parameters, test and validation top-1, and training time.
A ``--cache`` folder keeps the trained teachers (a rerun reads them instead of training).
"""

from __future__ import annotations

import tempfile

from _common import footer, header, parser

from kdbench.models import MODELS
from kdbench.models.fmnist import FashionCNN
from kdbench.run.engine import Engine
from kdbench.spec import make_spec


def register(widths: tuple[int, ...], depths: tuple[int, ...]) -> str:
    """A FashionCNN of these widths and depths as a model name."""
    name = "fmnist_" + "x".join(map(str, widths)) + "_" + "x".join(map(str, depths))
    MODELS.register(name)(
        lambda num_classes, input_shape: FashionCNN(widths, depths, num_classes, input_shape)
    )
    return name


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="a registered model (instead of --widths and --depths)")
    p.add_argument("--widths", nargs=3, type=int, default=[16, 32, 64])
    p.add_argument("--depths", nargs=3, type=int, default=[1, 1, 2])
    p.add_argument("--epochs", nargs="+", type=int, default=[15])
    p.add_argument("--recipe", default="fmnist-cosine")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--augment", action="store_true", help="teacher-only crop+flip")
    p.add_argument("--cache", default=None, help="teacher cache (default: a temporary folder)")
    args = p.parse_args()
    header(args)
    name = args.model or register(tuple(args.widths), tuple(args.depths))
    engine = Engine(args.cache or tempfile.mkdtemp(prefix="kdbench-teacher-"))
    for epochs in args.epochs:
        spec = make_spec(
            "fashion_mnist",
            name,
            "fmnist_s",
            "ce",
            recipe=args.recipe,
            teacher_epochs=epochs,
            batch_size=args.batch,
            dataset_options={"teacher_augment": True} if args.augment else {},
        )
        _, meta = engine.teachers.get(spec)
        print(
            f"{name} ({meta['params']:,} params) {args.recipe} {epochs} epochs"
            f"{' crop+flip' if args.augment else ''}: test {meta['top1']:.2f} %, "
            f"val {meta['val_top1']:.2f} %, trained in {meta['train_s']:.0f} s",
            flush=True,
        )
    footer()


if __name__ == "__main__":
    main()
