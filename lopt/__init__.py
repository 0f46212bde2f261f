"""Learned optimizers as drop-in optax transforms.

import lopt
lo = lopt.MLPLOpt()                      # or lopt.LearnedMuon(), lopt.VeLO(), ...
theta = lo.init(key)
tx = lo.as_optax(theta, num_steps=5000)  # optax.GradientTransformationExtraArgs
updates, state = tx.update(grads, state, params, value=loss)
lopt.save("my.lopt", lo, theta, meta={...})
tx = lopt.load("my.lopt").as_optax(num_steps=5000)
tx = lopt.pretrained("<name>", num_steps=5000)   # lopt.list_pretrained()
"""

from lopt.architectures import ARCHITECTURES
from lopt.base import LearnedOptimizer, Theta
from lopt.frozen import Frozen, FrozenFileError, load, save
from lopt.hyper_adam import HyperAdam
from lopt.learned_muon import LearnedMuon
from lopt.mlp_lopt import MLPLOpt
from lopt.pretrained import list_pretrained, load_pretrained, pretrained
from lopt.scheduled import LearnedSchedule
from lopt.velo import VeLO

__all__ = [
    "ARCHITECTURES",
    "Frozen",
    "FrozenFileError",
    "HyperAdam",
    "LearnedMuon",
    "LearnedOptimizer",
    "LearnedSchedule",
    "MLPLOpt",
    "Theta",
    "VeLO",
    "list_pretrained",
    "load",
    "load_pretrained",
    "pretrained",
    "save",
]
