"""The look of things: districts (building styles), capture devices and times of day."""

from __future__ import annotations

import dataclasses

TIMES_OF_DAY = ("day", "sunset", "night")
SEASONS = ("summer", "autumn", "winter", "spring")


@dataclasses.dataclass(frozen=True)
class District:
    """The look of one part of the city; every building is drawn from these ranges."""

    index: int
    block: tuple[float, float]  # distance between street centre lines (m)
    street: tuple[float, float]  # street width, facade to facade (m)
    sidewalk: float  # sidewalk width (m)
    floors: tuple[int, int]
    floor_height: tuple[float, float]
    facade_width: tuple[float, float]  # width of one building along the street (m)
    palette: tuple[tuple[float, float, float], ...]
    materials: tuple[float, ...]  # weights: plain, brick, stone, siding, glass
    roofs: tuple[float, ...]  # weights: flat, gable, stepped
    shop: float  # probability of a shop on the ground floor
    vertical_sign: float  # probability of a vertical sign (Tokyo)
    tree_spacing: float
    tree_probability: float
    pole_spacing: float
    utility_poles: bool
    road: tuple[float, float, float]
    pavement: tuple[float, float, float]
    marking: tuple[float, float, float]
    foliage: tuple[tuple[float, float, float], ...]


DISTRICTS = {
    "pitts": District(
        index=0,
        block=(58.0, 92.0),
        street=(15.0, 22.0),
        sidewalk=3.2,
        floors=(2, 6),
        floor_height=(3.2, 3.9),
        facade_width=(7.0, 18.0),
        palette=(
            (0.55, 0.25, 0.18),
            (0.62, 0.33, 0.22),
            (0.45, 0.22, 0.17),
            (0.72, 0.62, 0.48),
            (0.58, 0.56, 0.52),
            (0.80, 0.76, 0.66),
            (0.36, 0.40, 0.33),
            (0.66, 0.45, 0.30),
            (0.30, 0.30, 0.34),
            (0.75, 0.70, 0.60),
        ),
        materials=(0.25, 0.40, 0.15, 0.10, 0.10),
        roofs=(0.6, 0.25, 0.15),
        shop=0.35,
        vertical_sign=0.0,
        tree_spacing=11.0,
        tree_probability=0.55,
        pole_spacing=30.0,
        utility_poles=False,
        road=(0.32, 0.32, 0.34),
        pavement=(0.60, 0.58, 0.55),
        marking=(0.85, 0.72, 0.20),
        foliage=((0.22, 0.38, 0.14), (0.28, 0.42, 0.16), (0.18, 0.32, 0.15), (0.45, 0.40, 0.15)),
    ),
    "sf": District(
        index=1,
        block=(70.0, 110.0),
        street=(18.0, 26.0),
        sidewalk=3.6,
        floors=(2, 4),
        floor_height=(3.0, 3.6),
        facade_width=(6.0, 10.5),
        palette=(
            (0.70, 0.86, 0.78),
            (0.93, 0.76, 0.78),
            (0.68, 0.80, 0.92),
            (0.95, 0.92, 0.80),
            (0.96, 0.88, 0.55),
            (0.92, 0.92, 0.90),
            (0.78, 0.72, 0.88),
            (0.85, 0.60, 0.45),
            (0.55, 0.70, 0.62),
            (0.60, 0.62, 0.75),
        ),
        materials=(0.45, 0.02, 0.08, 0.40, 0.05),
        roofs=(0.45, 0.45, 0.10),
        shop=0.25,
        vertical_sign=0.0,
        tree_spacing=9.0,
        tree_probability=0.35,
        pole_spacing=35.0,
        utility_poles=False,
        road=(0.26, 0.26, 0.27),
        pavement=(0.70, 0.69, 0.66),
        marking=(0.92, 0.92, 0.90),
        foliage=((0.25, 0.45, 0.20), (0.32, 0.50, 0.22), (0.20, 0.36, 0.22)),
    ),
    "tokyo": District(
        index=2,
        block=(36.0, 64.0),
        street=(8.5, 13.0),
        sidewalk=1.6,
        floors=(3, 9),
        floor_height=(3.0, 3.5),
        facade_width=(5.0, 11.0),
        palette=(
            (0.88, 0.88, 0.86),
            (0.75, 0.75, 0.74),
            (0.82, 0.78, 0.70),
            (0.60, 0.60, 0.62),
            (0.90, 0.86, 0.78),
            (0.45, 0.47, 0.50),
            (0.70, 0.55, 0.45),
            (0.95, 0.95, 0.95),
            (0.55, 0.62, 0.66),
        ),
        materials=(0.35, 0.05, 0.30, 0.05, 0.25),
        roofs=(0.88, 0.02, 0.10),
        shop=0.7,
        vertical_sign=0.55,
        tree_spacing=22.0,
        tree_probability=0.2,
        pole_spacing=24.0,
        utility_poles=True,
        road=(0.36, 0.36, 0.37),
        pavement=(0.55, 0.55, 0.56),
        marking=(0.92, 0.92, 0.92),
        foliage=((0.20, 0.36, 0.18), (0.26, 0.40, 0.16)),
    ),
}

SIGN_COLOURS = (
    (0.85, 0.12, 0.10),
    (0.10, 0.30, 0.75),
    (0.95, 0.80, 0.10),
    (0.10, 0.55, 0.25),
    (0.95, 0.45, 0.05),
    (0.95, 0.95, 0.92),
    (0.60, 0.10, 0.55),
    (0.08, 0.08, 0.10),
)


@dataclasses.dataclass(frozen=True)
class Camera:
    """Intrinsics and colour response of a capture device."""

    hfov: tuple[float, float]  # horizontal field of view range (degrees)
    height: float  # metres above the ground
    pitch: tuple[float, float]  # degrees, positive looks up
    gains: tuple[float, float, float]  # white balance
    gamma: float
    saturation: float
    contrast: float
    vignette: float
    noise: float  # multiplies the time-of-day sensor noise


CAMERAS = {
    "streetview": Camera(
        hfov=(60.0, 60.0),
        height=2.5,
        pitch=(5.0, 5.0),
        gains=(1.0, 1.0, 1.0),
        gamma=1.0,
        saturation=1.0,
        contrast=1.0,
        vignette=0.0,
        noise=1.0,
    ),
    "streetview-query": Camera(
        hfov=(50.0, 70.0),
        height=2.5,
        pitch=(1.0, 9.0),
        gains=(1.02, 1.0, 0.97),
        gamma=1.05,
        saturation=0.95,
        contrast=1.05,
        vignette=0.05,
        noise=1.0,
    ),
    "phone-sf": Camera(
        hfov=(45.0, 65.0),
        height=1.6,
        pitch=(-2.0, 10.0),
        gains=(1.08, 1.0, 0.88),
        gamma=0.9,
        saturation=1.3,
        contrast=1.15,
        vignette=0.25,
        noise=1.5,
    ),
    "phone-tokyo": Camera(
        hfov=(50.0, 70.0),
        height=1.6,
        pitch=(-2.0, 8.0),
        gains=(0.95, 1.0, 1.08),
        gamma=1.1,
        saturation=1.1,
        contrast=1.1,
        vignette=0.15,
        noise=1.3,
    ),
}


@dataclasses.dataclass(frozen=True)
class TimeOfDay:
    """Sky, sun, fog and artificial light of one time of day."""

    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    sun_azimuth: float
    ambient: tuple[float, float, float]
    sun: tuple[float, float, float]
    ground: float  # light on horizontal surfaces, relative to facades facing the sun
    fog_distance: float
    fog_colour: tuple[float, float, float]
    emission: float  # strength of lit windows and signs
    lit_share: float  # share of lit windows
    lamps: float  # street-lamp strength
    exposure: float
    noise: float
    clouds: float
    # A phone's automatic exposure (night): the gain that brings the frame's median luminance
    # to this level, at most `max_gain` and never below 1 (0: the fixed `exposure` alone).
    auto_exposure: float = 0.0
    max_gain: float = 1.0


TIMES = {
    "day": TimeOfDay(
        sky_horizon=(0.80, 0.87, 0.95),
        sky_zenith=(0.36, 0.56, 0.88),
        sun_azimuth=200.0,
        ambient=(0.62, 0.64, 0.68),
        sun=(0.50, 0.48, 0.44),
        ground=0.85,
        fog_distance=500.0,
        fog_colour=(0.80, 0.85, 0.92),
        emission=0.0,
        lit_share=0.0,
        lamps=0.0,
        exposure=1.0,
        noise=0.008,
        clouds=0.7,
    ),
    "sunset": TimeOfDay(
        sky_horizon=(1.0, 0.60, 0.32),
        sky_zenith=(0.28, 0.26, 0.50),
        sun_azimuth=262.0,
        ambient=(0.30, 0.26, 0.32),
        sun=(0.85, 0.50, 0.28),
        ground=0.45,
        fog_distance=380.0,
        fog_colour=(0.85, 0.55, 0.40),
        emission=0.45,
        lit_share=0.18,
        lamps=0.35,
        exposure=1.05,
        noise=0.02,
        clouds=0.8,
    ),
    "night": TimeOfDay(
        sky_horizon=(0.14, 0.10, 0.09),
        sky_zenith=(0.01, 0.015, 0.04),
        sun_azimuth=0.0,
        ambient=(0.035, 0.04, 0.06),
        sun=(0.0, 0.0, 0.0),
        ground=1.0,
        fog_distance=200.0,
        fog_colour=(0.06, 0.05, 0.06),
        emission=1.0,
        lit_share=0.38,
        lamps=0.8,
        exposure=1.1,
        noise=0.04,
        clouds=0.0,
        auto_exposure=0.16,
        max_gain=6.0,
    ),
}


@dataclasses.dataclass(frozen=True)
class Conditions:
    """What else than the time of day a capture depends on: where the sun stands, how overcast
    the sky is, the exposure and the season (the trees' foliage). The defaults are the
    database's conditions: the time of day's sun (with its small jitter), clear, summer."""

    sun_azimuth: float | None = None  # degrees; None: the time of day's, jittered by +-20
    overcast: float = 0.0  # 0 clear .. 1 fully overcast: less sun, more diffuse light, grey sky
    exposure: float = 1.0  # multiplies the time of day's exposure
    season: str = "summer"

    def __post_init__(self):
        if self.season not in SEASONS:
            raise ValueError(f"season {self.season!r}: expected one of {', '.join(SEASONS)}")
        if not 0.0 <= self.overcast <= 1.0:
            raise ValueError(f"overcast {self.overcast}: expected 0..1")
        if self.exposure <= 0:
            raise ValueError(f"exposure {self.exposure}: expected a positive factor")


CLEAR = Conditions()
OVERCAST_SKY = (0.72, 0.74, 0.77)  # the sky's colour under full overcast, before exposure
SEASON_FOLIAGE = {  # foliage colour of a season (None: the district's) and its density
    "summer": (None, 1.0),
    "spring": ((0.42, 0.58, 0.22), 0.85),
    "autumn": ((0.62, 0.36, 0.12), 0.8),
    "winter": ((0.36, 0.30, 0.24), 0.3),
}
