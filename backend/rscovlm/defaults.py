"""Defaults and limits a user meets, defined once.

The CLI, the server's schemas and the pipelines read them from here; the plugin keeps
its own copy (it imports nothing from the backend) and a test compares the two.
"""

from __future__ import annotations

#: The paper's tiling: 512 px windows overlapping by 100 px (step 412).
TILE_SIZE = 512
OVERLAP = 100
TILE_SIZE_MIN = 64
TILE_SIZE_MAX = 2048

#: Answer budget per detection tile, in new tokens. The reference inference code allows
#: 16,384 (one oriented box costs about 32 tokens, so ~500 objects); engines lower it to
#: what the model's context leaves after the prompt.
DETECT_MAX_NEW_TOKENS = 16384
#: Answer budget per question turn.
ASK_MAX_NEW_TOKENS = 512
#: The most a request may ask for (the server refuses more).
MAX_NEW_TOKENS_LIMIT = 32768
MIN_NEW_TOKENS = 16

#: A tile whose answer hits the budget is split into four overlapping quarters and asked
#: again, down to sub-tiles of this side (pixels); below it the answer is kept as it is
#: and the tile is reported as incomplete.
SPLIT_MIN_TILE = 128

#: A run over more tiles than this is announced before the model loads (the CLI says how
#: many; the plugin asks the user first): a 20,000 px orthophoto is ~2,400 tiles.
LARGE_RUN_TILES = 2000

#: How a detected object's confidence score is made from the model's token probabilities
#: (one of rscovlm.scores.DEFINITIONS), and how a merged object's score comes from the
#: sightings it absorbed (rscovlm.merge.SCORE_RULES). Chosen by bench/score_study.py on 20
#: held-out scenes with the demo model (figures in bench/README.md): the mean probability
#: of the object's coordinate and label tokens, the survivor's own score. Ranked by it,
#: DOTA_devkit AP50 is 36.2 against mAP_nc 28.6 on the very same detections.
SCORE_DEFINITION = "object_mean"
SCORE_MERGE = "own"
#: Whether the merge keeps an object's better-scored sighting (True) or its score-free
#: survivor (False: inside its tile, then larger), scored by SCORE_MERGE either way.
#: Measured: the better-scored sighting is the worse box (AP50 34.6, mAP_nc 27.8 against
#: 36.2 and 28.6), so it is off; ``rscovlm detect --merge-by-score`` turns it on.
MERGE_BY_SCORE = False
