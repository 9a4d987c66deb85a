"""KD case vs ce case of the same student (digits, cnn_t → cnn_s, quick profile): through kdbench
(teacher outputs cached) and through the bare loop with the teacher run every step (naive) or
its logits precomputed. Target: kdbench kd/ce ≤ 1.15 (the naive loop: ≈ 2.3).
"""

from _common import footer, header, measure_pair, median, pair_arguments, parser


def main() -> None:
    args = pair_arguments(parser(__doc__.splitlines()[0])).parse_args()
    header(args)
    rows = measure_pair(args)

    def ratio(a: str, b: str, key: str = "train") -> float:
        return median(rows[a][key]) / median(rows[b][key])

    print("kd / ce (ratios of medians of training time):")
    print(
        f"  kdbench (teacher-output cache):    {ratio('kdbench kd', 'kdbench ce'):.3f}"
        f"   (whole case wall: {ratio('kdbench kd', 'kdbench ce', 'wall'):.3f})"
    )
    print(f"  bare, teacher run every step:      {ratio('bare kd online', 'bare ce'):.3f}")
    print(f"  bare, teacher logits precomputed:  {ratio('bare kd cached', 'bare ce'):.3f}")
    print("target: kdbench ≤ 1.15; naive ≈ 2.3")
    footer()


if __name__ == "__main__":
    main()
