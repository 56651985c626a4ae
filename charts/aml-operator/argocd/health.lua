-- Argo CD health check for the amloperator.io kinds (AmlWorkspace, AmlCompute, AmlDatastore, AmlModelVersion,
-- AmlEnvironmentVersion, AmlCodeVersion, AmlOnlineEndpoint, AmlOnlineDeployment, AmlRoleAssignment):
-- one script for all of them, since they share one status shape.
-- Lua 5.1 as Argo CD runs it: the object is the global `obj`, the script returns `hs`. It uses no
-- `string` library, only the base library.
--
--   Degraded     Stalled=True (a person must act: credentials, permissions, quota, invalid spec,
--                a failed ARM operation), or ARM's provisioningState is Failed
--   Progressing  no status yet; status.observedGeneration or the Ready condition's observedGeneration
--                behind metadata.generation; Reconciling=True; Ready not True (WaitingForParent,
--                WaitingForDeployments, Creating, Updating, Deleting, Provisioning, a retried error)
--   Healthy      Ready=True for the current generation

local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- "Reason: message", or whichever of the two is there.
local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  if c.reason ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c.reason ~= nil then
    return c.reason
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local conditions = status.conditions
local ready = find(conditions, "Ready")
local reconciling = find(conditions, "Reconciling")
local stalled = find(conditions, "Stalled")

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

if status.provisioningState == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(ready, "ARM reports provisioningState Failed")
  return hs
end

if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

-- Ready False or Unknown without Stalled: the operator is working on it or retrying by itself.
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for Ready")
return hs
