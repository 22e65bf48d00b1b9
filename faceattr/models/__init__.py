"""The network: timm backbones by name, task heads, and the multi-task FaceAttrNet."""

from __future__ import annotations

from faceattr.models.backbone import BACKBONES, create_backbone
from faceattr.models.net import FaceAttrNet, build_model

__all__ = ["BACKBONES", "FaceAttrNet", "build_model", "create_backbone"]
