"""The column ray-caster: each image column casts one ray in the 2D street map against the
block footprints; each row of that column is then wall, ground or sky by perspective. Trees,
poles, cars and people are depth-tested billboards; then the camera's response."""

from __future__ import annotations

import math

import numpy as np

from vgjax.synthetic.layout import City, block_rect, cell, make_city, street_free
from vgjax.synthetic.specs import DATASET_SPECS, DATASETS, NIGHT_SUBSET
from vgjax.synthetic.sprites import LAMP, furniture, sprite_shape, transients
from vgjax.synthetic.styles import (
    CAMERAS,
    CLEAR,
    OVERCAST_SKY,
    TIMES,
    TIMES_OF_DAY,
    Camera,
    Conditions,
    TimeOfDay,
)
from vgjax.synthetic.surfaces import facade_columns, facade_pixels, ground_pixels

MAX_DIST = 260.0  # metres a ray travels before it counts as "open sky"
SPRITE_RANGE = 90.0  # metres within which trees and poles are drawn
MAX_LAMPS = 8  # nearest street lamps that light a night view


def _cast(city: City, ox: float, oy: float, dx: np.ndarray, dy: np.ndarray):
    """First block hit by each ray: distance (inf if none), cell (i, j) and face.

    Faces: 0 south (y = y0), 1 east (x = x1), 2 north (y = y1), 3 west (x = x0).
    """
    n = dx.shape[0]
    dxs = np.where(np.abs(dx) < 1e-9, 1e-9, dx)
    dys = np.where(np.abs(dy) < 1e-9, 1e-9, dy)
    inv_x, inv_y = 1.0 / dxs, 1.0 / dys
    ci = np.full(n, cell(city.xs, ox))
    cj = np.full(n, cell(city.ys, oy))
    t_hit = np.full(n, np.inf)
    face = np.zeros(n, np.int64)
    hit_i, hit_j = ci.copy(), cj.copy()
    done = np.zeros(n, bool)
    east, north = dxs > 0, dys > 0
    last_x, last_y = len(city.xs) - 2, len(city.ys) - 2
    for _ in range(64):
        x0, x1, y0, y1 = block_rect(city, ci, cj)
        tx0, tx1 = (x0 - ox) * inv_x, (x1 - ox) * inv_x
        ty0, ty1 = (y0 - oy) * inv_y, (y1 - oy) * inv_y
        txn, tyn = np.minimum(tx0, tx1), np.minimum(ty0, ty1)
        t_near = np.maximum(txn, tyn)
        t_far = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
        hit = ~done & (t_near <= t_far) & (t_far > 0) & (t_near < MAX_DIST)
        if hit.any():
            t_hit[hit] = np.maximum(t_near[hit], 0.0)
            f = np.where(txn >= tyn, np.where(east, 3, 1), np.where(north, 0, 2))
            face[hit] = f[hit]
            hit_i[hit], hit_j[hit] = ci[hit], cj[hit]
            done |= hit
        nx = np.where(east, city.xs[ci + 1], city.xs[ci])
        ny = np.where(north, city.ys[cj + 1], city.ys[cj])
        tnx, tny = (nx - ox) * inv_x, (ny - oy) * inv_y
        step_x = tnx < tny
        ci = ci + np.where(step_x, np.where(east, 1, -1), 0)
        cj = cj + np.where(step_x, 0, np.where(north, 1, -1))
        done |= (
            (np.minimum(tnx, tny) > MAX_DIST) | (ci < 0) | (ci > last_x) | (cj < 0) | (cj > last_y)
        )
        ci, cj = np.clip(ci, 0, last_x), np.clip(cj, 0, last_y)
        if done.all():
            break
    return t_hit, hit_i, hit_j, face



FACE_AZIMUTH = np.array([180.0, 90.0, 0.0, 270.0])  # outward normal of faces 0..3
LAMP_COLOUR = np.array([1.0, 0.8, 0.5])


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]
) -> np.ndarray:
    """Bilinearly upsampled random grid in [0, 1]."""
    grid = rng.random((cells[0] + 1, cells[1] + 1))
    yy = np.linspace(0, cells[0], shape[0])
    xx = np.linspace(0, cells[1], shape[1])
    y0 = np.minimum(yy.astype(int), cells[0] - 1)
    x0 = np.minimum(xx.astype(int), cells[1] - 1)
    fy, fx = (yy - y0)[:, None], (xx - x0)[None, :]
    g = grid
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def _lamp_light(lamps_x, lamps_y, px, py, pz, strength):
    """Light of street lamps (heads 6.3 m up) on points; (N,) intensity."""
    out = np.zeros(np.broadcast_shapes(np.shape(px), np.shape(py), np.shape(pz)))
    for lx, ly in zip(lamps_x, lamps_y):
        d2 = (px - lx) ** 2 + (py - ly) ** 2 + (pz - 6.3) ** 2
        out += 16.0 / (d2 + 16.0)
    return out * strength



def render_view(
    east: float,
    north: float,
    heading: float,
    *,
    dataset: str = "pitts30k",
    time_of_day: str = "day",
    size: tuple[int, int] = (120, 160),
    hfov: float = 60.0,
    camera_height: float = 2.5,
    pitch: float = 5.0,
    camera: str = "streetview",
    seed: int = 0,
    rng: np.random.Generator | int | None = None,
    cars: int = 0,
    people: int = 0,
    supersample: int = 2,
    conditions: Conditions = CLEAR,
) -> np.ndarray:
    """Renders the view from UTM (east, north) with compass `heading` (degrees clockwise from
    north) in `dataset`'s district of the city of `seed`. Returns uint8 (H, W, 3).

    `rng` (or an int seed for it) drives what is not a property of the place: clouds,
    cars/people, exposure jitter, which extra windows are lit and sensor noise; `conditions`
    (sun, overcast, exposure, season) are the capture's beyond its time of day.
    """
    if dataset == NIGHT_SUBSET[0]:
        dataset = NIGHT_SUBSET[1]
    if dataset not in DATASET_SPECS:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if time_of_day not in TIMES:
        raise ValueError(f"time_of_day {time_of_day!r}: expected one of {', '.join(TIMES_OF_DAY)}")
    if camera not in CAMERAS:
        raise ValueError(f"camera {camera!r}: expected one of {', '.join(CAMERAS)}")
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"size {size!r}: expected (H, W) with both at least 8")
    if not 10.0 <= hfov <= 150.0:
        raise ValueError(f"hfov {hfov}: expected 10..150 degrees")
    spec = DATASET_SPECS[dataset]
    city = make_city(spec.district, int(seed))
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    ox, oy = east - spec.origin[0], north - spec.origin[1]
    if not street_free(city, ox, oy, 0.3):
        raise ValueError(f"position ({east:.2f}, {north:.2f}) of {dataset} is inside a building")
    return render(
        city,
        ox,
        oy,
        heading,
        TIMES[time_of_day],
        CAMERAS[camera],
        tuple(size),
        hfov,
        camera_height,
        pitch,
        rng,
        cars,
        people,
        supersample,
        conditions,
    )


def render(
    city: City,
    ox,
    oy,
    heading,
    tod: TimeOfDay,
    cam: Camera,
    size,
    hfov,
    cam_h,
    pitch,
    rng: np.random.Generator,
    n_cars: int,
    n_people: int,
    ss: int,
    conditions: Conditions = CLEAR,
) -> np.ndarray:
    """`render_view` in local metres of `city`, unchecked; `ss` is the supersampling factor."""
    cond = conditions
    H, W = size[0] * ss, size[1] * ss
    f = (W / 2) / math.tan(math.radians(hfov) / 2)
    cx, cy = W / 2, H / 2 + f * math.tan(math.radians(pitch))
    off = np.arctan((np.arange(W) + 0.5 - cx) / f)
    hd = math.radians(heading)
    fwd = np.array([math.sin(hd), math.cos(hd)])
    right = np.array([math.cos(hd), -math.sin(hd)])
    ang = hd + off
    dx, dy = np.sin(ang), np.cos(ang)
    cos_off = np.cos(off)
    t, bi, bj, face = _cast(city, ox, oy, dx, dy)
    hit = np.isfinite(t)
    t = np.where(hit, t, MAX_DIST)
    dperp = t * cos_off
    cols = facade_columns(city, t, bi, bj, face, ox, oy, dx, dy)
    top = np.where(hit, cols["top"], -1.0)

    v = (cy - (np.arange(H) + 0.5)) / f  # (H,) tan of elevation
    z = (cam_h + dperp[None, :] * v[:, None]).astype(np.float32)  # (H, W) height on the wall
    wall = (z >= 0) & (z < top[None, :])
    ground = z < 0
    salt = int(rng.integers(1 << 30))
    coarse = (-(-H // 4), -(-W // 4))  # clouds are smooth: noise at 1/4 resolution
    sky_noise = 0.65 * _smooth_noise(rng, coarse, (3, 5)) + 0.35 * _smooth_noise(
        rng, coarse, (7, 12)
    )
    exposure = tod.exposure * rng.uniform(0.92, 1.08) * cond.exposure
    sun_az = tod.sun_azimuth + rng.uniform(-20, 20)
    if cond.sun_azimuth is not None:
        sun_az = cond.sun_azimuth
    # Overcast: the sun fades into diffuse light, the sky greys, the air thickens.
    sun = np.array(tod.sun) * (1 - 0.85 * cond.overcast)
    ambient = np.array(tod.ambient) * (1 + 0.35 * cond.overcast * (tod.sun[1] > 0.4))
    fog_distance = tod.fog_distance * (1 - 0.4 * cond.overcast)

    # Sky.
    elev = np.clip(np.arctan(v) / (math.pi / 2.2), 0, 1)[:, None, None]
    img = np.array(tod.sky_horizon) * (1 - elev) ** 1.5 + np.array(tod.sky_zenith) * (
        1 - (1 - elev) ** 1.5
    )
    img = np.broadcast_to(img.astype(np.float32), (H, W, 3)).copy()
    if tod.clouds > 0:
        cloud = np.clip((sky_noise - rng.uniform(0.45, 0.75)) * 2.5, 0, 1).astype(np.float32)
        cloud = np.repeat(np.repeat(cloud, 4, 0), 4, 1)[:H, :W, None] * np.float32(tod.clouds)
        cloud_col = np.array(
            [0.97, 0.97, 0.98] if tod.sun[1] > 0.4 else [1.0, 0.7, 0.6], np.float32
        )
        above = int(np.clip(math.ceil(cy), 0, H))  # rows above the horizon can show sky
        img[:above] = img[:above] * (1 - cloud[:above]) + cloud_col * cloud[:above]
    if cond.overcast > 0:
        grey = np.array(OVERCAST_SKY, np.float32) * np.float32(np.mean(tod.sky_horizon) / 0.873)
        img = img * np.float32(1 - cond.overcast) + grey * np.float32(cond.overcast)
    depth = np.full((H, W), np.inf, np.float32)

    lamps = None
    if tod.lamps > 0:
        fur = furniture(city, ox, oy, 60.0)
        near = np.nonzero(fur["kind"] == LAMP)[0]
        near = near[np.argsort((fur["x"][near] - ox) ** 2 + (fur["y"][near] - oy) ** 2)[:MAX_LAMPS]]
        lamps = (fur["x"][near], fur["y"][near])

    # Facades, computed densely over the rows that hold any wall.
    wall_rows = np.nonzero(wall.any(1))[0]
    if wall_rows.size:
        r0, r1 = wall_rows[0], wall_rows[-1] + 1
        zs = z[r0:r1]
        albedo, emit = facade_pixels(cols, zs, tod, salt)
        facing = np.maximum(np.cos(np.radians(FACE_AZIMUTH[cols["face"]] - sun_az)), 0)
        colour = albedo * (ambient + sun * facing[:, None])
        if lamps is not None:
            lamp = 0.45 * _lamp_light(*lamps, cols["hx"][None], cols["hy"][None], zs, tod.lamps)
            colour += albedo * lamp[..., None] * LAMP_COLOUR
        if emit is not None:
            colour += emit
        fog = (1 - np.exp(-dperp / fog_distance))[:, None]
        colour = colour * (1 - fog) + np.array(tod.fog_colour) * fog
        m = wall[r0:r1]
        img[r0:r1][m] = colour[m]
        depth[r0:r1][m] = np.broadcast_to(dperp, m.shape)[m]

    # Ground.
    rr, cc = np.nonzero(ground)
    if rr.size:
        tg = cam_h / -v[rr]
        reach = tg / cos_off[cc]
        gx, gy = ox + dx[cc] * reach, oy + dy[cc] * reach
        albedo = ground_pixels(city, gx, gy)
        light = (ambient + sun * 0.55) * tod.ground
        light = np.broadcast_to(light, albedo.shape)
        if lamps is not None:
            light = light + _lamp_light(*lamps, gx, gy, 0.0, tod.lamps)[:, None] * LAMP_COLOUR
        fog = (1 - np.exp(-tg / fog_distance))[:, None]
        img[rr, cc] = albedo * light * (1 - fog) + np.array(tod.fog_colour) * fog
        depth[rr, cc] = tg

    # Billboards, far to near, depth-tested per pixel.
    fur = furniture(city, ox, oy, SPRITE_RANGE)
    tr = transients(city, rng, ox, oy, fwd, right, n_cars, n_people)
    sprites = {k: np.concatenate([fur[k], tr[k]]) for k in fur}
    rel_x, rel_y = sprites["x"] - ox, sprites["y"] - oy
    sd = rel_x * fwd[0] + rel_y * fwd[1]
    sl = rel_x * right[0] + rel_y * right[1]
    visible = (sd > 0.8) & (np.abs(sl) - sprites["half"] < sd * (W / 2) / f + 1.0)
    glows = []
    for i in np.nonzero(visible)[0][np.argsort(-sd[visible], kind="stable")]:
        d_i, kind = sd[i], int(sprites["kind"][i])
        xc = cx + f * sl[i] / d_i
        half_px = f * sprites["half"][i] / d_i
        y_bot = cy + f * cam_h / d_i
        y_top = cy - f * (sprites["height"][i] - cam_h) / d_i
        x0, x1 = max(int(xc - half_px), 0), min(math.ceil(xc + half_px), W)
        y0, y1 = max(int(y_top), 0), min(math.ceil(y_bot), H)
        if x0 >= x1 or y0 >= y1:
            continue
        a = ((np.arange(x0, x1) + 0.5 - xc) / half_px)[None, :]
        b = ((y_bot - (np.arange(y0, y1) + 0.5)) / (y_bot - y_top))[:, None]
        mask, albedo, emit = sprite_shape(
            kind, int(sprites["id"][i]), a, b, city.key, tod, city.district, cond.season
        )
        mask = mask & (depth[y0:y1, x0:x1] > d_i)
        if not mask.any():
            continue
        light = ambient + sun * 0.6
        if lamps is not None:
            light = (
                light
                + _lamp_light(
                    *lamps, np.array([sprites["x"][i]]), np.array([sprites["y"][i]]), 1.5, tod.lamps
                )
                * LAMP_COLOUR
            )
        fog = 1 - math.exp(-d_i / fog_distance)
        colour = (albedo * light + emit) * (1 - fog) + np.array(tod.fog_colour) * fog
        region = img[y0:y1, x0:x1]
        region[mask] = colour[mask]
        depth[y0:y1, x0:x1][mask] = d_i
        if kind == LAMP and tod.lamps > 0:
            glows.append((xc + 0.7 * half_px, y_top + 0.05 * (y_bot - y_top), f * 0.25 / d_i))
    for gx_, gy_, sigma in glows:
        r = int(4 * sigma) + 1
        xa, xb = max(int(gx_) - r, 0), min(int(gx_) + r + 1, W)
        ya, yb = max(int(gy_) - r, 0), min(int(gy_) + r + 1, H)
        if xa >= xb or ya >= yb:
            continue
        yy = (np.arange(ya, yb) + 0.5 - gy_)[:, None]
        xx = (np.arange(xa, xb) + 0.5 - gx_)[None, :]
        g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))[..., None]
        img[ya:yb, xa:xb] += g * LAMP_COLOUR * 0.7 * tod.lamps

    # Down-sample, then the camera: exposure, white balance, tone, saturation, vignette, noise.
    if ss > 1:
        img = img.reshape(size[0], ss, size[1], ss, 3).mean(axis=(1, 3))
    if tod.auto_exposure > 0:
        median = float(np.median(img.mean(-1))) * exposure
        exposure *= min(max(tod.auto_exposure / max(median, 1e-4), 1.0), tod.max_gain)
    img = img * exposure * np.array(cam.gains)
    img = 0.5 + (img - 0.5) * cam.contrast
    lum = img.mean(-1, keepdims=True)
    img = lum + (img - lum) * cam.saturation
    img = np.clip(img, 0, 1)
    if cam.gamma != 1.0:
        img = img ** (1.0 / cam.gamma)
    if cam.vignette > 0:
        yy = np.linspace(-1, 1, size[0])[:, None]
        xx = np.linspace(-1, 1, size[1])[None, :]
        img = img * (1 - cam.vignette * (xx**2 + yy**2) / 2)[..., None]
    sigma = tod.noise * cam.noise
    img = img + rng.normal(0, sigma, img.shape) + rng.normal(0, sigma * 0.5, img.shape[:2] + (1,))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)

