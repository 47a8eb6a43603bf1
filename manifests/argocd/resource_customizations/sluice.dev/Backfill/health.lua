-- Argo CD health of a sluice.dev Backfill. Argo CD runs it with gopher-lua (Lua 5.1); the object
-- is the global `obj`. The first rule that matches decides:
--   status not written for the current spec yet (observedGeneration) -> Progressing
--   Ready=False (InvalidSpec)                                        -> Degraded
--   Failed=True (too many partitions failed)                         -> Degraded
--   Complete=True                                                    -> Healthy
--   spec.suspend                                                     -> Suspended
--   anything else (running, throttled by quota, not started)         -> Progressing, with progress
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

-- "12/744 partitions" and, while throttled, why.
local function progress(fallback)
  local text = obj.status.progress or ""
  local throttled = condition("Throttled")
  if throttled ~= nil and throttled.status == "True" then
    if text ~= "" then
      text = text .. "; "
    end
    text = text .. "throttled: " .. describe(throttled, "")
  end
  if text == "" then
    return fallback
  end
  return text
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

local failed = condition("Failed")
if failed ~= nil and failed.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(failed, "Failed")
  return hs
end

local complete = condition("Complete")
if complete ~= nil and complete.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(complete, "Complete")
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended by spec.suspend"
  local done = progress("")
  if done ~= "" then
    hs.message = hs.message .. " at " .. done
  end
  return hs
end

hs.status = "Progressing"
hs.message = progress(describe(condition("Progressing"), "Waiting to start"))
return hs
