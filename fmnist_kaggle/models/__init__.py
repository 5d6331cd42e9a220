"""A timm-style model registry: `create_model(name, num_classes, in_chans=1, **kw)`.

Custom networks register themselves with `@register_model`; any timm model is
available as `timm:<name>`. Importing this package imports torch.
"""

# Importing the modules fills the registry.
from fmnist_kaggle.models import report_cnns, resnet  # noqa: F401,E402
from fmnist_kaggle.models.registry import (
    check_model_size,
    count_params,
    create_model,
    list_models,
    register_model,
    report_classes,
)

__all__ = ["check_model_size", "count_params", "create_model", "list_models", "register_model", "report_classes"]
