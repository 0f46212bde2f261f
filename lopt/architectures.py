"""The learned-optimizer architectures by name: what a ``.lopt`` file's ``architecture`` and a
meta-training config's ``optimizer.architecture`` refer to. A new architecture is a class of
``LearnedOptimizer`` listed here (its ``name`` is its class name)."""

from lopt.base import LearnedOptimizer
from lopt.hyper_adam import HyperAdam
from lopt.learned_muon import LearnedMuon
from lopt.mlp_lopt import MLPLOpt
from lopt.scheduled import LearnedSchedule
from lopt.velo import VeLO

ARCHITECTURES: dict[str, type[LearnedOptimizer]] = {
    cls.__name__: cls for cls in (MLPLOpt, VeLO, HyperAdam, LearnedSchedule, LearnedMuon)
}
