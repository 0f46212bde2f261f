"""Studies built on the benchmark library, each a ``python -m bench`` command.

Of a suite: ``saturation`` (does tuned Adam reach ~0 loss on its tasks?). Of trained
optimizers: ``stability`` (does training 4× longer help?), ``deployment`` (what a schedule
or a rate chosen at deployment adds), ``family_eval`` (a file against Adam on a family's
held-out members). Of meta-training: ``estimator_curves`` (the gradient estimators'
meta-training curves on one task, at one inner-step budget).
"""
