"""Hard limits on what a spec may ask for, so hostile or mistaken input fails fast with a message.

Shape propagation runs on the meta device, which allocates nothing: a Linear with 10**12
features would "work" there and only fail (or exhaust memory) when the generated file runs.
These limits turn such specs into compile errors. They sit far above any real model.
"""

# Spec size
# Nodes of the model, counting every copy of every node of a block: checked while the YAML is read
# (`nodes:` entries) and again from the block structure before any block is expanded. A
# 10,000-node chain compiles in about 15 s on one core; a spec over the limit is refused in a second.
MAX_NODES = 10_000

# YAML
MAX_SPEC_BYTES = 8 * 2**20  # a 10,000-node spec is about 0.4 MiB
# Values after alias expansion, against "billion laughs" (a 10,000-node spec has about 60,000).
MAX_YAML_VALUES = 250_000
MAX_YAML_DEPTH = 64  # nesting of mappings and lists; real specs nest 4 or 5 deep
# Spec files read for one compile through `extends:` (a base named twice is read twice), so a
# diamond of bases many levels deep is refused before it reads thousands of files.
MAX_SPEC_FILES = 64

# Tensors and layers
MAX_TENSOR_ELEMENTS = 2**31  # elements of one sample of one tensor (8 GiB in float32)
MAX_NODE_PARAMETERS = 10**11  # parameters of one node (400 GB in float32)
MAX_LAYER_COUNT = 10_000  # `num_layers`-style arguments: their constructors loop before any check
