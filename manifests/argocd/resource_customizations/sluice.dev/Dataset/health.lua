-- Argo CD health of a sluice.dev Dataset. Argo CD runs it with gopher-lua (Lua 5.1); the object
-- is the global `obj`. The first rule that matches decides:
--   status not written for the current spec yet (observedGeneration) -> Progressing
--   Ready=False (InvalidSpec)                                        -> Degraded
--   Fresh=False (Stale: older than spec.freshness.maxAge)            -> Degraded
--   SchemaConformant=False (the reported schema breaks the contract) -> Degraded
--   ReportValid=False (a producing step reported malformed results) -> Degraded
--   Ready=True                                                       -> Healthy, with the freshness
--     (also when never produced yet, or past warnAfter: Argo CD has no "warning" health)
--   anything else                                                    -> Progressing
-- A Dataset has no suspension of its own: the Pipeline producing it shows Suspended.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- "Reason: message", tolerating either being absent.
local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  elseif message ~= "" then
    return message
  elseif reason ~= "" then
    return reason
  end
  return fallback
end

local generation = obj.metadata.generation
if obj.status == nil or obj.status.observedGeneration == nil
    or (generation ~= nil and obj.status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice operator to observe the current spec"
  return hs
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
  return hs
end

for _, kind in ipairs({ "Fresh", "SchemaConformant", "ReportValid" }) do
  local c = condition(kind)
  if c ~= nil and c.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(c, kind .. " is False")
    return hs
  end
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(condition("Fresh"), "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Ready condition")
return hs
