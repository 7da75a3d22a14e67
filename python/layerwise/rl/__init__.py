"""layerwise.rl -- Pong from pixels: a policy network trained with REINFORCE on the real
Atari 2600 game (Gymnasium + ale-py, the ``rl`` extra), after Karpathy's "Deep
Reinforcement Learning: Pong from Pixels" (2016).

* ``atari``     -- the environments (ALE/Pong-v5, no sticky actions) and the frame preprocessing
* ``policy``    -- the 6400-200-1 policy network built from layerwise.nn, its per-step forward
* ``reinforce`` -- discounted returns reset at every point, the batched policy-gradient backward
* ``trainer``   -- the training loop: vector environments, checkpoints, --resume
* ``history``   -- the per-game history and the files made from it (CSV, summary, reward curve)
* ``play``      -- runs a saved policy for a few games, optionally writes a GIF

Only ``atari`` (and what imports it) needs Gymnasium; ``policy`` and ``reinforce`` are plain
layerwise code.
"""
