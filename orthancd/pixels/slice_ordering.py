"""The order of a series' instances as a volume, as Orthanc's SliceOrdering
computes it (used by /series/{id}/numpy): by position along the series'
normal when every slice has one and they are distinct, else by Index In
Series, else "Unable to order the slices"."""
import numpy as np

from orthancd.errors import ErrorCode, OrthancError
from orthancd.ids import ResourceLevel
from orthancd.index.base import MetadataType

F32 = np.float32
_EPSILON = float(np.finfo(F32).eps)


def _vector(text, size):
    if text is None:
        return None
    tokens = text.split("\\")
    if len(tokens) != size:
        return None
    try:
        return [F32(float(t.strip())) for t in tokens]
    except ValueError:
        return None


def _normal(main_tags):
    cosines = _vector(main_tags.get("ImageOrientationPatient"), 6)
    if cosines is None:
        return None
    c = cosines
    return (F32(c[1] * c[5] - c[2] * c[4]), F32(c[2] * c[3] - c[0] * c[5]),
            F32(c[0] * c[4] - c[1] * c[3]))


def _parallel_or_opposite(u, v):
    norm_u = float(np.sqrt(sum(float(x) * float(x) for x in u)))
    norm_v = float(np.sqrt(sum(float(x) * float(x) for x in v)))
    if abs(norm_u * norm_v) < 10 * _EPSILON:
        return False
    cosine = sum(float(a) * float(b) for a, b in zip(u, v)) / (norm_u * norm_v)
    return abs(cosine - 1.0) < 10 * _EPSILON or abs(abs(cosine) - 1.0) < 10 * _EPSILON


class _Slice:
    def __init__(self, index, instance_id):
        self.id = instance_id
        tags = index.get_resource(instance_id, ResourceLevel.INSTANCE).main_tags
        self.frames = 1
        frames = (tags.get("NumberOfFrames") or "").strip()
        if frames.isdigit():
            self.frames = int(frames)
        self.position = _vector(tags.get("ImagePositionPatient"), 3)
        self.normal = _normal(tags)
        value = (index.get_metadata_value(instance_id, ResourceLevel.INSTANCE,
                                          MetadataType.IndexInSeries) or "").strip()
        self.index_in_series = int(value) if value.isdigit() else None

    def along(self, normal):
        p = self.position
        return F32(F32(F32(normal[0] * p[0]) + F32(normal[1] * p[1])) + F32(normal[2] * p[2]))


def ordered_slices(index, series_id):
    """[(instance ID, frames count)] in Orthanc's order."""
    return slice_ordering(index, series_id)[0]


def slice_ordering(index, series_id):
    """([(instance ID, frames count)] in Orthanc's order, whether the
    series is a volume: ordered by position, with more than one slice)."""
    series = index.get_resource(series_id, ResourceLevel.SERIES)
    normal = _normal(series.main_tags)
    slices = [_Slice(index, i) for i in index.get_children(series_id, ResourceLevel.SERIES)]
    ordered = _by_position(slices, normal)
    is_volume = ordered is not None and len(slices) > 1
    if ordered is None:
        ordered = _by_index_in_series(slices)
    if ordered is None:
        raise OrthancError(ErrorCode.CannotOrderSlices,
                           "Unable to order the slices of series " + series_id)
    return [(s.id, s.frames) for s in ordered], is_volume


def ordered_slices_json(index, series_id):
    """GET /series/{id}/ordered-slices (SliceOrdering::Format)."""
    slices, is_volume = slice_ordering(index, series_id)
    return {
        "Type": "Volume" if is_volume else "Sequence",
        "Dicom": ["/instances/%s/file" % instance for instance, _ in slices],
        "Slices": ["/instances/%s/frames/%d" % (instance, frame)
                   for instance, frames in slices for frame in range(frames)],
        "SlicesShort": [[instance, 0, frames] for instance, frames in slices],
    }


def _by_position(slices, normal):
    if len(slices) <= 1:
        return slices
    if normal is None:
        return None
    for s in slices:
        if s.position is None or (s.normal is not None and
                                  not _parallel_or_opposite(s.normal, normal)):
            return None
    ordered = sorted(slices, key=lambda s: s.along(normal))
    for a, b in zip(ordered, ordered[1:]):
        if abs(float(b.along(normal)) - float(a.along(normal))) <= 10 * _EPSILON:
            return None
    return ordered


def _by_index_in_series(slices):
    if len(slices) <= 1:
        return slices
    if any(s.index_in_series is None for s in slices):
        return None
    return sorted(slices, key=lambda s: s.index_in_series)
