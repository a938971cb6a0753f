"""Building facades and the ground: per-pixel albedo (and emitted light at night) of what a
ray hits, all hashed from the ids of the block, facade, segment, floor and window."""

from __future__ import annotations

import math

import numpy as np

from vgjax.synthetic.hashing import hash_unit, lerp, mix, unit
from vgjax.synthetic.layout import City, block_rect, nearest_line
from vgjax.synthetic.styles import SIGN_COLOURS, TimeOfDay


def facade_columns(city: City, t, bi, bj, face, ox, oy, dx, dy) -> dict:
    """Per hit column: the building (segment) hit and its properties, all hashed from ids."""
    d = city.district
    x0, x1, y0, y1 = block_rect(city, bi, bj)
    hx, hy = ox + t * dx, oy + t * dy
    length = np.where(face % 2 == 0, x1 - x0, y1 - y0)
    u = np.select([face == 0, face == 1, face == 2], [hx - x0, hy - y0, x1 - hx], y1 - hy)
    u = np.clip(u, 0.0, length)
    wmin, wmax = d.facade_width
    k = np.arange(math.ceil(130.0 / wmin) + 1)
    facade = mix(np.zeros((), np.uint64), (city.key, bi, bj, face))
    widths = lerp(wmin, wmax, unit(mix(facade[:, None], (k[None], 1))))
    ends = np.cumsum(widths, axis=1)
    starts = ends - widths
    valid = starts < (length[:, None] - 0.5 * wmin)
    valid[:, 0] = True
    nseg = valid.sum(1)
    seg = np.maximum((valid & (starts <= u[:, None])).sum(1) - 1, 0)
    rows = np.arange(len(u))
    s0 = starts[rows, seg]
    width = np.maximum(np.where(seg == nseg - 1, length, ends[rows, seg]) - s0, 0.5)
    ul = u - s0
    state = mix(facade, (seg,))

    def h(prop):
        return unit(mix(state, (prop,)))

    def weighted(weights, prop):
        cum = np.cumsum(weights) / np.sum(weights)
        return np.minimum(np.searchsorted(cum, h(prop), side="right"), len(weights) - 1)

    def pick(colours, prop):
        colours = np.asarray(colours)
        return colours[np.minimum((h(prop) * len(colours)).astype(int), len(colours) - 1)]

    floors = d.floors[0] + np.floor(h(2) * (d.floors[1] - d.floors[0] + 1))
    floor_h = lerp(d.floor_height[0], d.floor_height[1], h(3))
    height = floors * floor_h + lerp(0.3, 1.4, h(4))
    roof = weighted(d.roofs, 5)
    gable = np.minimum(width * 0.32, 4.0) * (1.0 - np.abs(2.0 * ul / width - 1.0))
    stepped = 1.5 * ((ul > 0.25 * width) & (ul < 0.75 * width))
    top = height + np.select([roof == 1, roof == 2], [gable, stepped], 0.0)
    material = weighted(d.materials, 8)
    win_sp = lerp(2.3, 4.2, h(14))
    ncol = np.maximum(np.floor((width - 0.8) / win_sp), 1)
    trim = np.stack([lerp(0.8, 1.0, h(9)), lerp(0.78, 0.98, h(10)), lerp(0.74, 0.95, h(11))], 1)
    trim = trim * np.where(h(12) < 0.35, 0.45, 1.0)[:, None]
    sign = pick(SIGN_COLOURS, 23)
    vsign = pick(SIGN_COLOURS, 30)
    glass = np.stack(
        [lerp(0.10, 0.22, h(19)), lerp(0.13, 0.25, h(20)), lerp(0.16, 0.32, h(21))], 1
    )
    base = pick(d.palette, 6) * lerp(0.88, 1.12, h(7))[:, None]
    # Wall texture cell (m) by material: plain, brick, stone, siding, glass.
    cell_u = np.array([0.8, 0.66, 1.2, 50.0, 1.6])[material]
    cell_z = np.array([0.8, 0.30, 0.75, 0.22, 50.0])[material]
    ink = lambda c: np.repeat(np.where(c.sum(1) > 1.8, 0.1, 0.95)[:, None], 3, 1)
    return {
        "state": state,
        "u": ul,
        "width": width,
        "face": face,
        "hx": hx,
        "hy": hy,
        "top": top,
        "height": height,
        "floor_h": floor_h,
        "material": material,
        "cell_u": cell_u,
        "cell_z": cell_z,
        "cornice_h": lerp(0.3, 0.9, h(13)),
        "band": h(31) < 0.4,
        "win_sp": win_sp,
        "ncol": ncol,
        "win_m0": (width - ncol * win_sp) / 2,
        "win_hw": lerp(0.35, 0.72, h(15)) * win_sp / 2,
        "win_h": lerp(0.40, 0.62, h(16)) * floor_h,
        "sill": lerp(0.7, 1.0, h(17)),
        "mullion": h(18) < 0.45,
        "shop": h(22) < d.shop,
        "door_u": lerp(0.15, 0.85, h(24)) * width,
        "vsign_u": np.where(h(28) < d.vertical_sign, lerp(0.6, 1.0, h(29)) * width - 0.5, -100.0),
        "awning": h(32) < 0.5,
        "display_lit": h(108) < 0.85,
        "display_glow": lerp(0.3, 0.7, h(109)),
        # Colours by label (see facade_pixels), each (W, 3).
        "colours": np.stack(
            [
                base,
                np.broadcast_to([0.68, 0.64, 0.58], base.shape),
                trim,
                glass,
                trim,
                glass * 0.8 + 0.05,
                np.stack(
                    [lerp(0.15, 0.6, h(25)), lerp(0.1, 0.35, h(26)), lerp(0.08, 0.3, h(27))], 1
                ),
                pick(SIGN_COLOURS, 33),
                sign,
                ink(sign),
                vsign,
                ink(vsign),
            ]
        ),
    }


WALL, MORTAR, TRIM, GLASS, FRAME, DISPLAY, DOOR, AWNING, SIGN, GLYPH, VSIGN, VGLYPH = range(12)


def _frac(x):
    return x - np.floor(x)


def facade_pixels(cols: dict, z: np.ndarray, tod: TimeOfDay, salt: int):
    """Albedo and emitted light of facade pixels, (R, W, 3) each, for heights z (R, W).

    Column properties broadcast over rows; each pixel gets one label (wall, window, door,
    sign, ...) whose colour comes from its column's table, times a per-pixel shade.
    """
    c = {
        k: (v.astype(np.float32) if v.dtype == np.float64 else v)[None, :]
        for k, v in cols.items()
        if k not in ("colours", "hx", "hy")
    }
    u, w, fh = c["u"], c["width"], c["floor_h"]
    fl = np.floor(z / fh)
    zf = z - fl * fh
    mat = c["material"]
    state = c["state"]
    # Wall texture: bricks, stone blocks, siding boards or plaster patches.
    row_z = np.floor(z / c["cell_z"])
    cu = (u + 0.5 * c["cell_u"] * (row_z % 2)) / c["cell_u"]
    cell_noise = unit(mix(state, (row_z, np.floor(cu))))
    joint = (_frac(z / c["cell_z"]) < 0.14) | (_frac(cu) < 0.07)
    shade = np.select(
        [mat == 1, mat == 2, mat == 3],
        [
            lerp(0.82, 1.1, cell_noise),
            np.where(joint, 0.8, lerp(0.9, 1.06, cell_noise)),
            lerp(0.82, 1.04, _frac(z / 0.22)),
        ],
        lerp(0.95, 1.04, cell_noise),
    )
    label = np.where((mat == 1) & joint, MORTAR, WALL)

    top = c["top"]
    cornice = z > top - c["cornice_h"]
    label = np.where(cornice | (c["band"] & (zf < 0.18) & (fl >= 1)), TRIM, label)
    shade = np.where((z > top - c["cornice_h"] - 0.15) & ~cornice, shade * 0.55, shade)

    # Window grid on the upper floors (a glass wall is all windows).
    wc = np.floor((u - c["win_m0"]) / c["win_sp"])
    uc = (u - c["win_m0"]) - (wc + 0.5) * c["win_sp"]
    hw, sill, wh = c["win_hw"], c["sill"], c["win_h"]
    upper = (fl >= 1) & (z < c["height"] - c["cornice_h"] - 0.3)
    glass_wall = mat == 4
    in_grid = (wc >= 0) & (wc < c["ncol"]) & (np.abs(uc) < hw)
    window = upper & in_grid & (zf > sill) & (zf < sill + wh)
    window |= glass_wall & upper & (_frac(u / 1.6) > 0.06) & (zf > 0.35)
    frame = (
        window
        & ~glass_wall
        & (
            (np.abs(uc) > hw - 0.09)
            | (zf < sill + 0.1)
            | (zf > sill + wh - 0.09)
            | (c["mullion"] & (np.abs(uc) < 0.05))
        )
    )
    ground_floor = fl == 0
    shop = c["shop"] & ground_floor
    door = ground_floor & (np.abs(u - c["door_u"]) < 0.6) & (z < 2.3)
    window |= ground_floor & ~c["shop"] & ~door & in_grid & (z > 1.0) & (z < 2.4)
    label = np.where(window, np.where(frame, FRAME, GLASS), label)
    window_id = unit(mix(state, (fl + 1000, wc)))
    shade = np.where(
        window & ~frame, lerp(0.8, 1.4, window_id) * (0.85 + 0.1 * (zf - sill)), shade
    )

    # Ground floor: shop (display window, sign band with glyphs, awning) or a door.
    display = (
        shop
        & ~door
        & (z > 0.45)
        & (z < fh - 1.0)
        & (u > 0.4)
        & (u < w - 0.4)
        & (_frac(u / 2.2) > 0.05)
    )
    sign_band = shop & (z > fh - 0.85) & (z < fh - 0.12) & (u > 0.25) & (u < w - 0.25)
    awning = shop & c["awning"] & (z > fh - 1.05) & (z <= fh - 0.85)
    glyph_noise = unit(mix(state, (np.floor(u / 0.32) + 5000, np.floor(z / 0.55))))
    gz = _frac((z - fh + 0.85) / 0.73)
    glyph = sign_band & (glyph_noise > 0.45) & (gz > 0.25) & (gz < 0.75) & (_frac(u / 0.32) > 0.15)
    vdist = np.abs(u - c["vsign_u"])
    vsign = (vdist < 0.42) & (z > fh + 0.4) & (z < np.minimum(c["height"] - 1.0, fh + 9.0))
    vglyph = vsign & (glyph_noise > 0.35) & (vdist < 0.28) & (_frac(z / 0.55) > 0.2)
    for mask, lab in (
        (display, DISPLAY),
        (door, DOOR),
        (awning, AWNING),
        (sign_band, SIGN),
        (glyph, GLYPH),
        (vsign, VSIGN),
        (vglyph, VGLYPH),
    ):
        label = np.where(mask, lab, label)
    shade = np.where(awning & (_frac(u / 0.5) < 0.5), shade * 0.75, shade)
    shade = np.where(label >= DISPLAY, 1.0, shade)

    columns = np.arange(z.shape[1])[None, :]
    albedo = cols["colours"][label, columns] * shade[..., None]
    emit = None
    if tod.emission > 0:
        # Which rooms are lit is mostly a property of the place, partly of the evening.
        flip = unit(mix(np.uint64(salt), (state, fl, wc))) < 0.08
        lit = ((window_id < tod.lit_share) ^ flip) & (label == GLASS)
        room = (
            np.where(
                (_frac(window_id * 7.0) < 0.75)[..., None],
                np.array([1.0, 0.78, 0.45]),
                np.array([0.75, 0.85, 1.0]),
            )
            * lerp(0.45, 1.0, _frac(window_id * 13.0))[..., None]
        )
        emit = np.where(lit[..., None], room, 0.0)
        shop_light = np.array([1.0, 0.9, 0.7]) * c["display_glow"][..., None]
        emit = np.where((display & c["display_lit"])[..., None], shop_light, emit)
        emit = np.where((label >= SIGN)[..., None], albedo * 1.3, emit)
        emit = emit * tod.emission
    return albedo, emit


def ground_pixels(city: City, gx: np.ndarray, gy: np.ndarray):
    """Albedo of ground points: road (markings, crossings), sidewalk (paving), curb."""
    d = city.district
    ox, owx = nearest_line(city.xs, city.wx, gx)
    oy, owy = nearest_line(city.ys, city.wy, gy)
    ax, ay = np.abs(ox), np.abs(oy)
    on_v, on_h = ax < owx / 2, ay < owy / 2
    road_v, road_h = ax < owx / 2 - d.sidewalk, ay < owy / 2 - d.sidewalk
    road = road_v | road_h
    junction = road_v & road_h
    col = np.empty(gx.shape + (3,))
    col[:] = d.pavement
    tiles = (_frac(gx / 1.5) < 0.05) | (_frac(gy / 1.5) < 0.05)
    col = col * np.where(tiles, 0.82, 1.0)[..., None]
    curb = ~road & (
        (on_v & (ax < owx / 2 - d.sidewalk + 0.25)) | (on_h & (ay < owy / 2 - d.sidewalk + 0.25))
    )
    col = np.where(curb[..., None], np.array(d.pavement) * 1.15, col)
    key = city.key
    asphalt = (
        np.array(d.road)
        * lerp(0.9, 1.08, hash_unit(key, 200, np.floor(gx / 2.0), np.floor(gy / 2.0)))[..., None]
    )
    patch = hash_unit(key, 201, np.floor(gx / 7.0), np.floor(gy / 7.0)) < 0.12
    asphalt = np.where(patch[..., None], asphalt * 0.8, asphalt)
    col = np.where(road[..., None], asphalt, col)
    centre_v = road_v & ~on_h & (ax < 0.12) & (_frac(gy / 6.0) < 0.5)
    centre_h = road_h & ~on_v & (ay < 0.12) & (_frac(gx / 6.0) < 0.5)
    col = np.where((centre_v | centre_h)[..., None], np.array(d.marking), col)
    cross_v = (
        road_v
        & ~road_h
        & (ay > owy / 2 - d.sidewalk)
        & (ay < owy / 2 - d.sidewalk + 3.0)
        & (_frac(gx / 1.0) < 0.5)
    )
    cross_h = (
        road_h
        & ~road_v
        & (ax > owx / 2 - d.sidewalk)
        & (ax < owx / 2 - d.sidewalk + 3.0)
        & (_frac(gy / 1.0) < 0.5)
    )
    col = np.where((cross_v | cross_h)[..., None] & ~junction[..., None], 0.85, col)
    inside = ~(on_v | on_h)
    col = np.where(inside[..., None], np.array([0.25, 0.40, 0.18]), col)
    return col

