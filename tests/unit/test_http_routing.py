from aiorun.api.http import Request, Router


def test_image_names_may_contain_slashes():
    r = Router()

    @r.route("GET", "/images/{name:path}/json")
    async def h(req, eng):
        return None

    fn, params, known = r.match("GET", "/images/docker.io/library/busybox:1/json")
    assert fn is h and params == {"name": "docker.io/library/busybox:1"} and known


def test_method_mismatch_is_known_path():
    r = Router()

    @r.route("POST", "/containers/{id}/start")
    async def h(req, eng):
        return None

    fn, params, known = r.match("GET", "/containers/abc/start")
    assert fn is None and known


def test_query_parsing():
    req = Request.from_target("GET", "/containers/json?all=1&filters=%7B%7D", {})
    assert req.flag("all") and req.json_arg("filters") == {}
