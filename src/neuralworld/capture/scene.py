"""A procedural forest trail and its renderer: the synthetic ground truth of `neuralworld synth`.

The scene is made from a seed with numpy alone (`make_scene`): gently rolling ground with a
winding dirt trail (a closed loop, so a walk can go on forever), a few thousand trees, bushes
and rocks at every depth for parallax and occlusion, a sun direction. `Renderer` draws it with
OpenGL through moderngl on an EGL context (Mesa's llvmpipe on the CPU, no display needed):
Lambert sun light with baked soft shadows on the ground, a sky gradient, and exponential
distance fog computed per fragment. Everything is instanced from three unit meshes (cylinder,
cone, sphere) scaled per instance, and instances beyond the fog or behind the camera are left
out per frame, which keeps llvmpipe at hundreds of frames per second.

The camera is a pinhole in the project's convention (geometry.py: OpenCV axes x right, y down,
z forward; world z up; pose = camera-to-world). The same scene, size and pose always give the
same bytes on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from neuralworld.capture.odometry import intrinsics_from_fov
from neuralworld.errors import UserError
from neuralworld.geometry import OPENCV_TO_OPENGL_CAMERA, invert_pose

SCENES = ("trail",)
DEFAULT_FOV_DEG = 70.0  # horizontal field of view of the camera, about a phone's main camera
NEAR, FAR = 0.05, 200.0  # clip planes, metres
FOG_END = 55.0  # metres: fog is complete here, so nothing further is drawn
LOD_DISTANCE = 25.0  # metres: parts further away are drawn with coarser meshes
GROUND_HALF = 130.0  # the ground spans [-GROUND_HALF, GROUND_HALF]^2 metres
FOREST_HALF = 115.0  # trees grow within [-FOREST_HALF, FOREST_HALF]^2
EGL_PACKAGES = "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libgbm1"

# Instance rows of every part: origin xyz, scale xyz, colour rgb (float32). A part is a unit
# mesh (cylinder r=1 z 0..1, cone r=1 at z=0 apex z=1, sphere r=1) placed at origin, scaled.
PART_COLUMNS = 9
PART_KINDS = ("cylinder", "cone", "sphere")


@dataclass(frozen=True)
class Scene:
    """A procedural place, all in metres, world z up."""
    name: str
    seed: int
    trail: np.ndarray  # (M, 2) closed centre line of the trail, about 0.25 m apart
    trail_half_width: float
    terrain: np.ndarray  # (K, 4) rows amplitude, kx, ky, phase: height = sum a sin(kx x + ky y + p)
    parts: dict = field(repr=False)  # kind -> (P, 9) float32 instance rows (PART_COLUMNS)
    owners: dict = field(repr=False)  # kind -> (P,) int: the object each part belongs to
    obstacles: np.ndarray = field(repr=False)  # (O, 4): x, y, radius, object id of trunks/bushes/rocks
    sun: np.ndarray = field(repr=False)  # (3,) unit vector toward the sun

    def height_at(self, x, y) -> np.ndarray:
        """Ground height (metres) at world x, y (broadcasting arrays)."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        a, kx, ky, p = (self.terrain[:, i].reshape((-1,) + (1,) * x.ndim) for i in range(4))
        return np.sum(a * np.sin(kx * x + ky * y + p), axis=0)

    def only(self, objects) -> "Scene":
        """The same ground and trail with only the given objects (ids from `obstacles`/`owners`)."""
        keep = np.asarray(sorted(objects), np.int64)
        parts = {k: v[np.isin(self.owners[k], keep)] for k, v in self.parts.items()}
        owners = {k: v[np.isin(v, keep)] for k, v in self.owners.items()}
        return replace(self, parts=parts, owners=owners,
                       obstacles=self.obstacles[np.isin(self.obstacles[:, 3], keep)])


# ---------------------------------------------------------------------------------------------
# the scene, from a seed


@lru_cache(maxsize=4)
def make_scene(name: str = "trail", seed: int = 0) -> Scene:
    """The named procedural scene for `seed` (cached: scenes are immutable)."""
    if name not in SCENES:
        raise UserError(f"--scene {name}: unknown scene (choose from {', '.join(SCENES)})")
    rng = np.random.default_rng([seed, 1])
    trail = _trail_loop(rng)
    terrain = np.stack([rng.uniform(0.15, 0.6, 4),  # amplitude, metres
                        *_directions(rng, 4, 2 * np.pi / rng.uniform(25, 70, 4)),
                        rng.uniform(0, 2 * np.pi, 4)], axis=1)
    sun_az, sun_el = rng.uniform(0, 2 * np.pi), rng.uniform(0.55, 0.95)
    sun = np.array([np.cos(sun_az) * np.cos(sun_el), np.sin(sun_az) * np.cos(sun_el), np.sin(sun_el)])
    scene = Scene(name, int(seed), trail, 0.7, terrain, {}, {}, np.zeros((0, 4)), sun)
    parts, owners, obstacles = _plant(rng, scene)
    return replace(scene, parts=parts, owners=owners, obstacles=obstacles)


def _directions(rng, n, k):
    """n random wave vectors of magnitudes k -> (kx, ky)."""
    angle = rng.uniform(0, 2 * np.pi, n)
    return k * np.cos(angle), k * np.sin(angle)


def _trail_loop(rng) -> np.ndarray:
    """A winding closed path around the origin: radius 40 m give or take 15, sampled every ~0.25 m."""
    theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    radius = np.full_like(theta, 40.0)
    for k, amp in [(2, 6.0), (3, 4.0), (4, 2.5), (5, 2.0), (7, 1.2), (9, 0.8), (12, 0.4)]:
        radius += rng.uniform(0.4, 1.0) * amp * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    xy = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    seg = np.linalg.norm(np.diff(xy, axis=0, append=xy[:1]), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])  # arc length at each sample, loop closed
    even = np.arange(0, s[-1], 0.25)
    closed = np.concatenate([xy, xy[:1]])
    return np.stack([np.interp(even, s, closed[:, 0]), np.interp(even, s, closed[:, 1])], axis=1)


def _plant(rng, scene: Scene):
    """Trees on a jittered grid (no two in one 4.5 m cell), kept off the trail; bushes and rocks.
    Returns part instance rows per kind, their owners, and the obstacles a walker avoids."""
    cell = 4.5
    n = int(2 * FOREST_HALF / cell)
    gx, gy = np.meshgrid(np.arange(n), np.arange(n))
    xy = (np.stack([gx.ravel(), gy.ravel()], 1) + rng.uniform(0.1, 0.9, (n * n, 2))) * cell - FOREST_HALF
    trail_tree = cKDTree(scene.trail)
    trail_dist = trail_tree.query(xy)[0]
    kept = (trail_dist > 2.6) & (rng.uniform(size=len(xy)) < 0.85)
    xy, trail_dist = xy[kept], trail_dist[kept]
    conifer_share = 0.5 + 0.35 * np.sin(xy[:, 0] / 23 + rng.uniform(0, 6)) * np.cos(xy[:, 1] / 31)
    conifer = rng.uniform(size=len(xy)) < conifer_share
    parts = {k: [] for k in PART_KINDS}  # kind -> list of (owner, row)
    obstacles = []

    def add(kind, owner, origin, scale, colour):
        parts[kind].append((owner, [*origin, *scale, *colour]))

    for i, ((x, y), is_conifer, room) in enumerate(zip(xy, conifer, trail_dist)):
        z = float(scene.height_at(x, y)) - 0.3  # sunk a little so slopes show no gap
        height = rng.uniform(8, 20) if is_conifer else rng.uniform(7, 15)
        trunk_r = 0.06 + 0.013 * height * rng.uniform(0.8, 1.25)
        bark = np.array([0.30, 0.22, 0.15]) * rng.uniform(0.7, 1.15) + rng.uniform(-0.03, 0.03, 3)
        add("cylinder", i, (x, y, z), (trunk_r, trunk_r, height * (0.9 if is_conifer else 0.75)), bark)
        obstacles.append((x, y, trunk_r, i))
        if is_conifer:  # three stacked cones, each sticking out below the one above
            base = max(3.0, height * rng.uniform(0.2, 0.45))
            length = height - base
            radius = min(height * rng.uniform(0.15, 0.22), room + 0.5)  # branches may just reach the trail
            green = np.array([0.10, 0.24, 0.12]) * rng.uniform(0.75, 1.2) + rng.uniform(-0.02, 0.02, 3)
            for j in range(3):
                bottom, top = base + 0.3 * j * length, base + (0.55 + 0.225 * j) * length
                r = radius * (1 - 0.25 * j)
                add("cone", i, (x, y, z + bottom), (r, r, top - bottom), green * (1 + 0.08 * j))
        else:  # a main crown and two smaller lumps
            radius = min(rng.uniform(2.0, 3.8), room + 1.0)
            tall = radius * rng.uniform(0.8, 1.1)
            green = np.array([0.22, 0.36, 0.12]) * rng.uniform(0.75, 1.2) + rng.uniform(-0.03, 0.03, 3)
            add("sphere", i, (x, y, z + height - tall), (radius, radius, tall), green)
            for _ in range(2):
                off = rng.normal(0, radius * 0.5, 2)
                r = radius * rng.uniform(0.5, 0.75)
                add("sphere", i, (x + off[0], y + off[1], z + height - tall * rng.uniform(1.2, 1.7)),
                    (r, r, r * 0.85), green * rng.uniform(0.85, 1.1))
    # bushes and rocks, some right beside the trail for near parallax
    m = len(xy)
    count = int(900 * (FOREST_HALF / 100) ** 2)
    bush_xy = rng.uniform(-FOREST_HALF, FOREST_HALF, (count, 2))
    near = rng.integers(0, len(scene.trail), count // 3)
    side = rng.choice([-1.0, 1.0], count // 3)[:, None]
    tangent = scene.trail[(near + 1) % len(scene.trail)] - scene.trail[near]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1) / np.linalg.norm(tangent, axis=1, keepdims=True)
    bush_xy[: count // 3] = scene.trail[near] + side * normal * rng.uniform(1.3, 4.0, (count // 3, 1))
    is_rock = np.arange(count) % 4 == 3
    radius = np.where(is_rock, rng.uniform(0.15, 0.6, count), rng.uniform(0.35, 1.0, count))
    room = trail_tree.query(bush_xy)[0] - scene.trail_half_width - 0.4
    for k in np.flatnonzero(room > 1.2 * radius):  # none on the trail itself
        (x, y), r, owner = bush_xy[k], radius[k], m + k
        z = float(scene.height_at(x, y))
        if is_rock[k]:  # flat, grey
            grey = rng.uniform(0.33, 0.5) * np.array([1.0, 0.98, 0.92])
            add("sphere", owner, (x, y, z - 0.1), (r, r * rng.uniform(0.6, 1.0), r * 0.5), grey)
        else:
            green = np.array([0.13, 0.22, 0.07]) * rng.uniform(0.7, 1.3)
            add("sphere", owner, (x, y, z), (r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.6, 1.0)), green)
        obstacles.append((x, y, 1.2 * r, owner))
    rows = {k: np.array([r for _, r in v], np.float32).reshape(-1, PART_COLUMNS) for k, v in parts.items()}
    owners = {k: np.array([o for o, _ in v], np.int64) for k, v in parts.items()}
    return rows, owners, np.array(obstacles, np.float64)


# ---------------------------------------------------------------------------------------------
# textures baked from the scene


def _detail_texture(rng, size: int = 256) -> np.ndarray:
    """(size, size, 4) uint8 tileable noise, one scale per channel, for surface variation."""
    channels = []
    for sigma in (1.0, 3.0, 6.0, 1.8):
        c = gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
        c = (c - c.mean()) / (c.std() * 4) + 0.5
        channels.append(np.clip(c, 0, 1))
    return np.round(np.stack(channels, -1) * 255).astype(np.uint8)


def _ground_texture(scene: Scene, rng, size: int = 2048) -> np.ndarray:
    """(size, size, 4) uint8 map over the ground: R distance to the trail (0..5 m), G shadow of
    the tree crowns (sun from scene.sun), B slow patchiness. Row j is world y, column i is x."""
    texel = 2 * GROUND_HALF / size
    shift = 4  # cv2 fixed-point bits for sub-texel drawing

    def to_px(xy):
        return np.round(((np.asarray(xy) + GROUND_HALF) / texel - 0.5) * (1 << shift)).astype(np.int32)

    path = np.full((size, size), 255, np.uint8)
    cv2.polylines(path, [to_px(scene.trail)], True, 0, 1, cv2.LINE_8, shift)
    dist = cv2.distanceTransform(path, cv2.DIST_L2, 5) * texel  # metres to the centre line
    shadow = np.zeros((size, size), np.float32)
    drop = -scene.sun[:2] / scene.sun[2]  # ground offset per metre of height
    for kind in ("cone", "sphere"):
        rows = scene.parts[kind]
        middle = rows[:, 2:3] + rows[:, 5:6] * (0.35 if kind == "cone" else 0.0)
        heights = middle[:, 0] - scene.height_at(rows[:, 0], rows[:, 1])
        centres = rows[:, :2] + heights[:, None] * drop
        for (cx, cy), r, h in zip(to_px(centres), rows[:, 3], heights):
            if h > 0.8:  # bushes and rocks get no shadow of their own
                axes = (int(r * (1 << shift) / texel), int(r * (1 << shift) / texel / scene.sun[2] ** 0.5))
                angle = float(np.degrees(np.arctan2(drop[1], drop[0])))
                cv2.ellipse(shadow, (int(cx), int(cy)), axes, angle, 0, 360, 1.0, -1, cv2.LINE_8, shift)
    shadow = np.clip(cv2.GaussianBlur(shadow, (0, 0), 0.6 / texel) * 0.8, 0, 1)
    patches = gaussian_filter(rng.normal(size=(size // 8, size // 8)), 3.0)
    patches = cv2.resize(np.clip(patches / (patches.std() * 4) + 0.5, 0, 1), (size, size),
                         interpolation=cv2.INTER_CUBIC)
    out = np.stack([np.clip(dist / 5.0, 0, 1), shadow, np.clip(patches, 0, 1), np.ones_like(shadow)], -1)
    return np.round(out * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# meshes: (V, 7) float32 rows x y z nx ny nz ao, and (F, 3) counter-clockwise triangles


def _cylinder(sides: int = 10):
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    c, s = np.cos(a), np.sin(a)
    bottom = np.stack([c, s, 0 * a, c, s, 0 * a, 0.55 + 0 * a], 1)
    top = np.stack([c, s, 1 + 0 * a, c, s, 0 * a, 1 + 0 * a], 1)
    i = np.arange(sides)
    j = (i + 1) % sides
    faces = np.concatenate([np.stack([i, j, j + sides], 1), np.stack([i, j + sides, i + sides], 1)])
    return np.concatenate([bottom, top]), faces


def _cone(sides: int = 12, base: bool = True):
    """Unit cone, with its base disc (seen from below when a crown is above the eye) if `base`."""
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    c, s = np.cos(a), np.sin(a)
    k = 1 / np.sqrt(2)  # side normals for a cone as tall as wide
    rim = np.stack([c, s, 0 * a, c * k, s * k, k + 0 * a, 0.55 + 0 * a], 1)
    apex = np.stack([0 * a, 0 * a, 1 + 0 * a, c * k, s * k, k + 0 * a, 1 + 0 * a], 1)  # one per side
    disc = np.stack([c, s, 0 * a, 0 * a, 0 * a, -1 + 0 * a, 0.45 + 0 * a], 1)
    centre = np.array([[0, 0, 0, 0, 0, -1, 0.4]])
    i = np.arange(sides)
    j = (i + 1) % sides
    faces = np.stack([i, j, i + sides], 1)  # sides
    if not base:
        return np.concatenate([rim, apex]), faces
    faces = np.concatenate([faces, np.stack([3 * sides + 0 * i, j + 2 * sides, i + 2 * sides], 1)])
    return np.concatenate([rim, apex, disc, centre]), faces


def _sphere(rings: int = 6, sides: int = 10):
    v = []
    for r in range(rings + 1):
        phi = np.pi * r / rings - np.pi / 2  # from the bottom pole up
        for k in range(sides + 1):
            a = 2 * np.pi * k / sides
            n = (np.cos(phi) * np.cos(a), np.cos(phi) * np.sin(a), np.sin(phi))
            v.append((*n, *n, 0.5 + 0.5 * (0.5 + 0.5 * np.sin(phi))))
    faces = []
    for r in range(rings):
        for k in range(sides):
            p, q = r * (sides + 1) + k, (r + 1) * (sides + 1) + k
            faces += [(p, p + 1, q + 1), (p, q + 1, q)]
    return np.array(v), np.array(faces)


def _ground_mesh(scene: Scene, cell: float = 2.5, tiles: int = 8):
    """The terrain as tiles x tiles square tiles, each with its own vertices and a contiguous run
    of triangles, so that a frame draws only the tiles it sees. Returns verts, faces and
    (tiles^2, 6) rows: centre xyz, bounding radius, first face, face count."""
    per = int(round(2 * GROUND_HALF / cell / tiles))  # cells per tile side
    size = 2 * GROUND_HALF / tiles
    a, kx, ky, p = (scene.terrain[:, i, None, None] for i in range(4))
    local = (np.arange(per)[None, :] + (per + 1) * np.arange(per)[:, None]).ravel()  # lower-left corners
    quad = np.concatenate([np.stack([local, local + 1, local + per + 2], 1),
                           np.stack([local, local + per + 2, local + per + 1], 1)])
    verts, faces, info = [], [], []
    for ty in range(tiles):
        for tx in range(tiles):
            gx = np.linspace(-GROUND_HALF + tx * size, -GROUND_HALF + (tx + 1) * size, per + 1)
            gy = np.linspace(-GROUND_HALF + ty * size, -GROUND_HALF + (ty + 1) * size, per + 1)
            x, y = np.meshgrid(gx, gy)
            z = scene.height_at(x, y)
            slope_x = np.sum(a * kx * np.cos(kx * x + ky * y + p), 0)
            slope_y = np.sum(a * ky * np.cos(kx * x + ky * y + p), 0)
            normal = np.stack([-slope_x, -slope_y, np.ones_like(x)], -1)
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            centre = np.array([x.mean(), y.mean(), z.mean()])
            radius = np.sqrt(2) * size / 2 + np.abs(z - centre[2]).max()
            info.append([*centre, radius, len(faces) * len(quad), len(quad)])
            faces.append(quad + len(verts) * (per + 1) ** 2)
            verts.append(np.concatenate([np.stack([x, y, z], -1), normal, np.ones_like(x)[..., None]],
                                        -1).reshape(-1, 7))
    return np.concatenate(verts), np.concatenate(faces), np.array(info)


# ---------------------------------------------------------------------------------------------
# shaders

_COMMON = """
uniform vec3 u_cam;
uniform vec3 u_sun;
uniform vec3 u_fog_color;
uniform float u_fog_k;
vec3 fog(vec3 color, vec3 world) {
    // exponential fog reaching exactly 1 at FOG_END, so culled objects cannot pop
    float d = length(world - u_cam);
    float f = (1.0 - exp(-u_fog_k * d)) / (1.0 - exp(-u_fog_k * %(fog_end)f));
    return mix(color, u_fog_color, clamp(f, 0.0, 1.0));
}
float sunlight(vec3 n) { return 0.42 + 0.18 * n.z + 0.75 * max(dot(n, u_sun), 0.0); }
""" % {"fog_end": FOG_END}

_MESH_VS = """
#version 330
uniform mat4 u_viewproj;
in vec3 in_pos; in vec3 in_normal; in float in_ao;
in vec3 i_origin; in vec3 i_scale; in vec3 i_color;
out vec3 v_world; out vec3 v_normal; out vec3 v_color; out float v_ao;
void main() {
    v_world = i_origin + in_pos * i_scale;
    v_normal = in_normal / i_scale;  // normals of a scaled mesh scale inversely
    v_color = i_color;
    v_ao = in_ao;
    gl_Position = u_viewproj * vec4(v_world, 1.0);
}
"""

_PART_FS = """
#version 330
uniform sampler2D u_detail;
uniform vec2 u_tex_scale;  // across, along z: bark streaks on trunks, leaf clumps on crowns
in vec3 v_world; in vec3 v_normal; in vec3 v_color; in float v_ao;
out vec4 f_color;
""" + _COMMON + """
void main() {
    vec3 n = normalize(v_normal);
    // the texture projected along the axis the surface faces most (one lookup, no branch)
    vec3 a = abs(n);
    vec3 p = v_world * u_tex_scale.xxy;
    vec2 uv = a.z > max(a.x, a.y) ? p.xy : (a.x > a.y ? p.yz : p.xz);
    vec4 d = texture(u_detail, uv);
    vec3 c = v_color * (0.45 + 1.1 * d.r) * (0.8 + 0.4 * d.b) * v_ao * sunlight(n);
    f_color = vec4(fog(c, v_world), 1.0);
}
"""

_GROUND_FS = """
#version 330
uniform sampler2D u_ground;
uniform sampler2D u_detail;
uniform float u_trail_half_width;
in vec3 v_world; in vec3 v_normal; in vec3 v_color; in float v_ao;
out vec4 f_color;
""" + _COMMON + """
void main() {
    vec4 g = texture(u_ground, v_world.xy / %(span)f + 0.5);
    vec4 coarse = texture(u_detail, v_world.xy * 0.11);
    vec4 fine = texture(u_detail, v_world.xy * 0.9);
    float dist = g.r * 5.0 + (coarse.r - 0.5) * 0.7;  // ragged trail edge
    float trail = 1.0 - smoothstep(u_trail_half_width - 0.12, u_trail_half_width + 0.12, dist);
    float worn = 1.0 - smoothstep(u_trail_half_width, u_trail_half_width + 0.9, dist);
    vec3 moss = mix(vec3(0.16, 0.24, 0.07), vec3(0.30, 0.34, 0.12), g.b);
    vec3 litter = mix(vec3(0.30, 0.22, 0.12), vec3(0.38, 0.30, 0.17), fine.a);
    vec3 floor_ = mix(moss, litter, smoothstep(0.42, 0.62, coarse.b + 0.25 * worn));
    floor_ *= 0.65 + 0.7 * fine.r;
    vec3 dirt = mix(vec3(0.50, 0.41, 0.29), vec3(0.60, 0.52, 0.38), coarse.g) * (0.8 + 0.4 * fine.g);
    vec3 c = mix(floor_, dirt, trail);
    float light = 0.42 + 0.18 * v_normal.z + 0.75 * max(dot(normalize(v_normal), u_sun), 0.0) * (1.0 - g.g);
    f_color = vec4(fog(c * light, v_world), 1.0);
}
""" % {"span": 2 * GROUND_HALF}

_SKY_VS = """
#version 330
in vec2 in_ndc;
out vec2 v_ndc;
void main() { v_ndc = in_ndc; gl_Position = vec4(in_ndc, 1.0, 1.0); }  // on the far plane
"""

_SKY_FS = """
#version 330
uniform mat4 u_inv_viewproj;
uniform vec3 u_cam;
uniform vec3 u_sun;
uniform vec3 u_fog_color;
in vec2 v_ndc;
out vec4 f_color;
void main() {
    vec4 p = u_inv_viewproj * vec4(v_ndc, 1.0, 1.0);
    vec3 dir = normalize(p.xyz / p.w - u_cam);
    vec3 zenith = vec3(0.36, 0.55, 0.82);
    vec3 c = mix(u_fog_color, zenith, pow(clamp(dir.z, 0.0, 1.0), 0.6));
    c += vec3(1.0, 0.9, 0.7) * (0.6 * pow(max(dot(dir, u_sun), 0.0), 300.0)
                              + 0.2 * pow(max(dot(dir, u_sun), 0.0), 8.0));
    f_color = vec4(c, 1.0);
}
"""

FOG_COLOR = (0.66, 0.72, 0.73)
FOG_DENSITY = 0.03  # per metre


# ---------------------------------------------------------------------------------------------
# the renderer


def intrinsics(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> dict:
    """Pinhole intrinsics of the render camera in pixels (OpenCV: pixel centres at integers)."""
    return intrinsics_from_fov(width, height, fov_deg)


def projection(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """(4,4) OpenGL projection of the pinhole camera (OpenGL camera axes: y up, z backward)."""
    fx = intrinsics(width, height, fov_deg)["fx"]
    P = np.zeros((4, 4))
    P[0, 0], P[1, 1] = 2 * fx / width, 2 * fx / height
    P[2, 2], P[2, 3] = -(FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR)
    P[3, 2] = -1.0
    return P


def _standalone_context():
    try:
        import moderngl
        return moderngl.create_standalone_context(backend="egl")
    except Exception as e:  # a missing library shows up as ImportError, OSError or moderngl.Error
        raise UserError(f"OpenGL through EGL is not available ({type(e).__name__}: {e}) "
                        f"(install {EGL_PACKAGES}, e.g. apt-get install {EGL_PACKAGES})") from None


def _layout(prog, buffer, attributes, divisor=""):
    """A moderngl buffer layout that skips (as padding) the attributes a shader does not use."""
    formats, names = [], []
    for fmt, name in attributes:
        if name in prog:
            formats.append(fmt)
            names.append(name)
        else:
            formats.append(f"{4 * int(fmt[:-1])}x")
    return (buffer, " ".join(formats) + divisor, *names)


class Renderer:
    """Draws a Scene from camera-to-world poses into (H, W, 3) uint8 RGB frames.

        with Renderer(make_scene("trail", seed), 256, 192) as renderer:
            frame = renderer.render(pose)        # renderer.intrinsics: fx, fy, cx, cy

    One OpenGL context per renderer, drawing into an offscreen framebuffer of the given size.
    """

    def __init__(self, scene: Scene, width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG):
        import moderngl

        self.scene, self.width, self.height, self.fov_deg = scene, int(width), int(height), float(fov_deg)
        self.intrinsics = intrinsics(self.width, self.height, self.fov_deg)
        self._proj = projection(self.width, self.height, self.fov_deg)
        ctx = self.ctx = _standalone_context()
        ctx.depth_func = "<="  # the sky, drawn last on the far plane, passes where nothing is
        self.fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer((self.width, self.height), 4)],
                                   depth_attachment=ctx.depth_renderbuffer((self.width, self.height)))
        rng = np.random.default_rng([scene.seed, 2])
        self.detail = ctx.texture((256, 256), 4, _detail_texture(rng).tobytes())
        ground_map = _ground_texture(scene, rng)
        self.ground_map = ctx.texture(ground_map.shape[1::-1], 4, ground_map.tobytes())
        for tex in (self.detail, self.ground_map):
            tex.build_mipmaps()
            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self.ground_map.repeat_x = self.ground_map.repeat_y = False

        self.part_prog = ctx.program(vertex_shader=_MESH_VS, fragment_shader=_PART_FS)
        self.ground_prog = ctx.program(vertex_shader=_MESH_VS, fragment_shader=_GROUND_FS)
        self.sky_prog = ctx.program(vertex_shader=_SKY_VS, fragment_shader=_SKY_FS)
        for prog in (self.part_prog, self.ground_prog, self.sky_prog):
            self._set(prog, u_sun=tuple(scene.sun), u_fog_color=FOG_COLOR, u_fog_k=FOG_DENSITY)
        self._set(self.part_prog, u_detail=0)
        self._set(self.ground_prog, u_ground=1, u_detail=0, u_trail_half_width=scene.trail_half_width)

        sky = ctx.buffer(np.array([[-1, -1], [3, -1], [-1, 3]], np.float32).tobytes())  # one big triangle
        self.sky_vao = ctx.vertex_array(self.sky_prog, [(sky, "2f", "in_ndc")])
        verts, faces, self.ground_tiles = _ground_mesh(scene)
        ground_instance = ctx.buffer(np.array([0, 0, 0, 1, 1, 1, 1, 1, 1], np.float32).tobytes())
        self.ground_vao = self._mesh_vao(self.ground_prog, verts, faces, ground_instance)
        # Level of detail: llvmpipe shades vertices on one thread, so parts further than
        # LOD_DISTANCE (deep in the fog) are drawn from meshes with fewer sides.
        self.parts = []  # (rows, extent, texture scale, [(instance buffer, vertex array) near, far])
        meshes = {"cylinder": (_cylinder(10), _cylinder(5)), "cone": (_cone(12), _cone(7, base=False)),
                  "sphere": (_sphere(6, 10), _sphere(4, 7))}
        tex_scale = {"cylinder": (2.5, 0.3), "cone": (0.8, 0.8), "sphere": (0.8, 0.8)}
        for kind in PART_KINDS:
            rows = scene.parts[kind]
            if len(rows) == 0:
                continue
            extent = np.linalg.norm(rows[:, 3:6], axis=1) + 0.01  # bounding radius about the origin
            lods = []
            for mesh in meshes[kind]:
                buf = ctx.buffer(reserve=rows.nbytes)
                lods.append((buf, self._mesh_vao(self.part_prog, *mesh, buf)))
            self.parts.append((rows, extent, tex_scale[kind], lods))

    @staticmethod
    def _set(prog, **uniforms):
        for name, value in uniforms.items():
            if name in prog:  # the GLSL compiler drops uniforms a shader does not use
                prog[name].value = value

    def _mesh_vao(self, prog, verts, faces, instances):
        ctx = self.ctx
        vbo = ctx.buffer(np.asarray(verts, np.float32).tobytes())
        ibo = ctx.buffer(np.asarray(faces, np.int32).tobytes())
        per_vertex = _layout(prog, vbo, [("3f", "in_pos"), ("3f", "in_normal"), ("1f", "in_ao")])
        per_instance = _layout(prog, instances, [("3f", "i_origin"), ("3f", "i_scale"), ("3f", "i_color")], "/i")
        return ctx.vertex_array(prog, [per_vertex, per_instance], index_buffer=ibo, index_element_size=4)

    def _distances(self, rel: np.ndarray, extent: np.ndarray, R: np.ndarray) -> np.ndarray:
        """(P,) distances from the camera to bounding spheres (centres `rel` to the camera, world
        axes), inf for those outside the view frustum or beyond FOG_END. What is left out could
        not have changed a pixel: it is off screen or fully fogged."""
        p = rel @ R  # (P, 3) camera axes
        dist = np.sqrt(np.einsum("ij,ij->i", p, p))
        keep = (dist < FOG_END + extent) & (p[:, 2] > NEAR - extent)
        for axis, half in ((0, self.width / 2), (1, self.height / 2)):
            slope = half / self.intrinsics["fx"] * 1.05  # tan of the half angle, with a margin
            keep &= (np.abs(p[:, axis]) - slope * p[:, 2]) < extent * np.sqrt(1 + slope**2)
        return np.where(keep, dist, np.inf)

    def render(self, pose: np.ndarray) -> np.ndarray:
        """(4,4) camera-to-world pose -> (H, W, 3) uint8 RGB, row 0 at the top."""
        import moderngl

        pose = np.asarray(pose, np.float64)
        view = np.diag([*np.diag(OPENCV_TO_OPENGL_CAMERA), 1.0]) @ invert_pose(pose)
        viewproj = self._proj @ view
        cam = pose[:3, 3]
        as_gl = lambda m: tuple(np.asarray(m, np.float32).T.ravel())  # GLSL matrices are column-major
        for prog in (self.part_prog, self.ground_prog, self.sky_prog):
            self._set(prog, u_viewproj=as_gl(viewproj), u_inv_viewproj=as_gl(np.linalg.inv(viewproj)),
                      u_cam=tuple(cam))
        ctx = self.ctx
        self.fbo.use()
        self.fbo.clear(depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.detail.use(0)
        self.ground_map.use(1)
        # front to back, so that the depth test spares the fragment shader hidden pixels
        dists = [self._distances(rows[:, :3] - cam, extent, pose[:3, :3]) for rows, extent, _, _ in self.parts]
        for lod in (0, 1):
            for (rows, extent, tex_scale, lods), dist in zip(self.parts, dists):
                near = dist < LOD_DISTANCE
                pick = np.flatnonzero(near if lod == 0 else np.isfinite(dist) & ~near)
                if len(pick) == 0:
                    continue
                buf, vao = lods[lod]
                buf.write(np.ascontiguousarray(rows[pick[np.argsort(dist[pick], kind="stable")]]).tobytes())
                self._set(self.part_prog, u_tex_scale=tex_scale)
                vao.render(moderngl.TRIANGLES, instances=len(pick))
        tiles = self.ground_tiles
        seen = np.isfinite(self._distances(tiles[:, :3] - cam, tiles[:, 3], pose[:3, :3]))
        for _, _, _, _, first, count in tiles[seen].astype(np.int64):
            self.ground_vao.render(moderngl.TRIANGLES, vertices=3 * count, first=3 * first)
        self.sky_vao.render(moderngl.TRIANGLES)  # at depth 1: only where nothing else was drawn
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)[::-1].copy()

    def close(self) -> None:
        self.ctx.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
