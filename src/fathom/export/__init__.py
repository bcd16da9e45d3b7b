"""Plans as the configuration files of the engines people run, and those files back into plans.

Training: Megatron-LM launch scripts, DeepSpeed ``ds_config.json``, torchtitan job TOML. Serving: ``vllm serve``
and SGLang ``launch_server`` command lines. Every plan field an engine cannot express comes back as a warning that
names it.
"""

from fathom.export.base import ExportResult, ImportedServing, ImportedTraining, ServingSetup
from fathom.export.registry import (
    engine_names,
    export_serving_plan,
    export_training_plan,
    get_engine,
    import_serving,
    import_training,
)

__all__ = [
    "ExportResult",
    "ImportedServing",
    "ImportedTraining",
    "ServingSetup",
    "engine_names",
    "export_serving_plan",
    "export_training_plan",
    "get_engine",
    "import_serving",
    "import_training",
]
