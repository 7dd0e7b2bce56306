"""Setting 2, pretrained vision adaptation, behind the setting contract: the supervised setting's
phases, data pipeline and metrics on a *domain pair* (``data=digits``, ``data=domain_net``,
``data=image_folder``) with a pretrained backbone (``model=efficientnet_lite0``, ``model=resnet50``)."""
from lossmooth.settings.supervised.setting import Supervised


class PretrainedVision(Supervised):
    """An ImageNet-pretrained backbone fine-tuned on a source domain, then adapted to a target domain."""

    name = "pretrained_vision"
    sequences = False  # a domain pair is one switch


SETTING = PretrainedVision()
