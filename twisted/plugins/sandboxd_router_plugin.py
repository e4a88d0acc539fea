from twisted.application.service import ServiceMaker

router = ServiceMaker("sandboxd-router", "sandboxd.router.tap", "Stateless router in front of many sandboxd nodes", "sandboxd-router")
