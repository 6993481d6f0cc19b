"""`datasets.<name>.preprocessing`: the settings of the dataset's preprocessing step
(inference.preprocessing applies them). Only pydantic here, so that inference.config can
validate them when the benchmark file loads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HaarSettings(_Strict):
    """OpenCV Haar cascade (inference.models.faces.FaceDetector), the reference's parameters."""

    cascade: str = "haarcascade_frontalface_default.xml"
    scale_factor: float = Field(1.3, gt=1.0)
    min_neighbors: int = Field(5, ge=0)
    min_size: int | None = Field(None, ge=1)


class MtcnnSettings(_Strict):
    """MTCNN (inference.models.mtcnn), facenet-pytorch's defaults."""

    weights: str | None = None  # folder with pnet.pt rnet.pt onet.pt; default <cache_dir>/mtcnn
    min_face_size: int = Field(20, ge=12)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = Field(0.709, gt=0.0, lt=1.0)


class PreprocessingConfig(_Strict):
    """`datasets.<name>.preprocessing` (replaces the kind's default whole when given)."""

    crop: Literal["square_center", "none"] = "none"
    size: int | None = Field(None, ge=8, le=8192)
    face_detector: Literal["haar", "mtcnn", "none"] = "none"
    face_margin: float = Field(0.0, ge=0.0, le=2.0)  # of the face box's width / height, each side
    haar: HaarSettings = HaarSettings()
    mtcnn: MtcnnSettings = MtcnnSettings()

    @property
    def changes_pixels(self) -> bool:
        return self.crop != "none" or self.size is not None or self.face_detector != "none"

    def declared(self) -> dict[str, Any]:
        return {"crop": self.crop, "size": self.size, "face_detector": self.face_detector,
                "face_margin": self.face_margin}
