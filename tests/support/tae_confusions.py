"""Tae et al.'s Table 2 by construction: per VLM, how many of each intended emotion's images it
answered with each emotion (shared by tae_published, which writes raw rows, and tae_raw_answers,
which writes a user's files; this module imports nothing of the product, so journeys may use it).

1,440 images (3 races x 2 genders x 40 identities x 6 emotions, 240 per emotion). Each matrix
row is one intended emotion: how many of its 240 images the model answered with each emotion;
images missing from a row got no valid answer (an off-label reply, like Gemma3's "doubt"). The
counts were chosen so that the published per-emotion accuracies (Table 2, proportion correct of
the answered images) come out within rounding, the overall accuracy and Cohen's kappa of Table 1
too, and the errors follow the paper's description (Gemma3 reads most sad faces as neutral, LLaMA
most disgust as anger):

- Gemma3-4B: sad 30 of 238 answered = 0.126 (30 of 240 would print 0.125); accuracy 1044/1438
  = 0.726, kappa 0.671, macro F1 0.683 -- all three of Table 1.
- LLaMA-3.2-11B: disgust 2 of 239 answered; accuracy 882/1439 = 0.613, kappa 0.535. Its
  published macro F1 0.402 cannot be reached by ANY confusion with Table 2's accuracies: happy
  and neutral at 1.000 keep those two F1s high, and placing every error where it hurts most
  still gives about 0.51 (a hill-climb over all placements), so the paper's Table 1 and Table 2
  disagree for LLaMA; papers.tae_table1 shows that difference.

Table 2's cells depend on n: LLaMA's disgust 0.008 is 1 or 2 correct of 118-266 answered, and
Gemma3's sad 0.126 needs a count that 240 alone does not give; so the dataset keeps Tae's 40
identities (the dimensional tables would not need them).
"""

from __future__ import annotations

IDENTITIES = 40
ORDER = ("happy", "neutral", "fear", "disgust", "anger", "sad")  # rows and columns below
# (warehouse model, version) -> confusion; LLaMA is named by its provider id, which the seed
# published_aliases maps to the paper's "LLaMA-3.2-11B".
MODELS = {
    ("gemma3_4b", "qat-4bit"): [
        [240, 0, 0, 0, 0, 0],
        [0, 240, 0, 0, 0, 0],
        [1, 1, 235, 2, 1, 0],
        [8, 9, 8, 202, 4, 9],
        [23, 25, 30, 30, 97, 35],
        [12, 170, 5, 16, 5, 30],
    ],
    ("llama_vision", "Llama-3.2-11B-Vision-Instruct"): [
        [240, 0, 0, 0, 0, 0],
        [0, 240, 0, 0, 0, 0],
        [20, 20, 157, 0, 23, 20],
        [0, 0, 0, 2, 236, 1],
        [0, 0, 9, 0, 221, 10],
        [0, 150, 40, 0, 28, 22],
    ],
}


def answered_labels(counts: list[int], n_images: int) -> list[str | None]:
    """One intended emotion's images in order: the answered emotions of its confusion row, in
    ORDER, then None (no valid answer) for the rest."""
    labels: list[str | None] = [label for label, count in zip(ORDER, counts) for _ in range(count)]
    return labels + [None] * (n_images - len(labels))
