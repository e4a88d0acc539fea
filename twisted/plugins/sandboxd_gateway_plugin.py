from twisted.application.service import ServiceMaker

gateway = ServiceMaker("sandboxd-gateway", "sandboxd.gateway.tap", "Signing gateway for a multi-tenant sandboxd", "sandboxd-gateway")
