"""qsilicon: hardware-algorithm co-design of quantized neural-network accelerators.

The subpackages live at the top of the repository and are installed as
``qsilicon.quant``, ``qsilicon.hw``, ``qsilicon.sim``, ``qsilicon.search``,
``qsilicon.boards`` and ``qsilicon.flow``.
"""

__version__ = "0.1.0"
