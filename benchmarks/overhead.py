"""kdbench vs a bare hand-written PyTorch loop on one quick case (digits, cnn_t → cnn_s, kd T=4
and ce): the cost of kdbench's engine over the training itself.

kdbench side: ``Engine.distill`` with the teacher and its train-set outputs already cached.
``train_s`` covers the training steps and the per-epoch test evaluation; the whole case adds
building the student, loss setup, the final evaluation, top-5/agreement, FLOPs, inference
throughput and latency. Bare side (``_common.train_loop``): the same steps and the same per-epoch
evaluation, nothing else; for kd with the teacher's logits precomputed ("cached", what kdbench
does) and with the teacher run every step ("online", the naive loop).

Targets: issue 2 ≤ 1.10, issue 6 ≤ 1.05.
"""

from _common import footer, header, measure_pair, median, pair_arguments, parser


def main() -> None:
    args = pair_arguments(parser(__doc__.splitlines()[0])).parse_args()
    header(args)
    rows = measure_pair(args)

    def ratio(a: str, b: str, key: str) -> float:
        return median(rows[a][key]) / median(rows[b][key])

    print("kdbench / bare (ratios of medians):")
    for loss in ("kd", "ce"):
        bare = "bare kd cached" if loss == "kd" else "bare ce"
        print(
            f"  {loss}: training (train_s vs bare) {ratio(f'kdbench {loss}', bare, 'train'):.3f}"
            f"   whole case (distill wall vs bare) {ratio(f'kdbench {loss}', bare, 'wall'):.3f}"
        )
    print(
        f"  kd vs the naive bare loop (teacher online): training "
        f"{ratio('kdbench kd', 'bare kd online', 'train'):.3f}"
    )
    print("targets: ≤ 1.10 (issue 2), ≤ 1.05 (issue 6)")
    footer()


if __name__ == "__main__":
    main()
