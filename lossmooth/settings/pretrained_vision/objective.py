"""The pretrained-vision objectives: the supervised setting's, on a domain pair.

With ``f_theta`` an ImageNet-pretrained backbone (EfficientNet-Lite0 or ResNet-50, BatchNorm frozen on
its pretrained statistics: the two batches of one update never share batch statistics) and a fresh
classifier head, first fine-tuned on the source domain,

    L_S(theta) = CE(f_theta(x_S), y_S)    x_S: replayed images of the source domain (e.g. MNIST)
    L_T(theta) = CE(f_theta(x_T), y_T)    x_T: images of the target domain (e.g. MNIST-M-style blends)

    L_t = lam_t L_T + (1 - lam_t) L_S

LP-FT (``method=lp_ft``): the hard switch whose gradient outside the head is zeroed for the first
``probe_steps`` updates. The updates themselves are :mod:`lossmooth.settings.supervised.objective`'s.
"""
from lossmooth.settings.supervised.objective import adapt_step, evaluate, source_step, xent

__all__ = ["adapt_step", "evaluate", "source_step", "xent"]
