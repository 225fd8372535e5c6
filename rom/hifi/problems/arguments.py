"""Study-file keys (JSON-schema properties) that several problem families declare alike: the unit
square's mesh, a mesh file, units, numeric ranges. A module of its own, so families share them without
importing each other."""

# The mesh of the problems on the unit square.
UNIT_SQUARE_MESH = {"type": "object", "default": {}, "additionalProperties": False,
                    "properties": {"n": {"type": "integer", "minimum": 2, "maximum": 4096, "default": 32,
                                         "description": "cells per side of the unit square (n^2 free dofs)"}}}


def positive_range(default, description="") -> dict:
    """Schema of a (lower, upper) range of positive numbers."""
    return {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2,
            "increasing": True, "default": list(default), "description": description}


def number_range(default, description="") -> dict:
    return {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2, "increasing": True,
            "default": list(default), "description": description}


# A mesh read from a file (the declared PDEs, a black box's nodes).
MESH_FILE = {
    "type": "object", "required": ["file"], "additionalProperties": False,
    "properties": {
        "file": {"type": "string", "description": "mesh file (.msh 2.2/4.1 or any meshio format), relative to the "
                                                  "study file"},
        "generate": {"type": "string", "description": "command that writes the mesh when the file is missing "
                                                      "(placeholders {python}, {root}, {file}; run without a shell)"},
        "digest": {"type": "string", "description": "SHA-256 of the mesh file, filled in by romflow: a changed mesh "
                                                    "reruns the stages that read the problem"},
    }}
UNITS = {"type": "string", "default": "1", "description": "units of the solution (report labels)"}
